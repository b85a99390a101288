/** Reminders on the page: the next-run line under the title, the notification bell, desktop notifications. */

import { getSchedule } from './api.js';
import { t } from './i18n.js';
import { formatTime } from './render.js';

const NOTIFY_KEY = 'chat.notifyReminders';  // localStorage: '1' once the user turned notifications on

export class Reminders {
  #scheduleInfo;
  #bell;

  constructor({ scheduleInfo, bell }) {
    this.#scheduleInfo = scheduleInfo;
    this.#bell = bell;
    bell.addEventListener('click', () => this.toggleNotifications());
    this.#updateBell();
  }

  /** Show the next reminder time under the title (nothing when reminders are off). */
  async refreshSchedule() {
    const info = this.#scheduleInfo;
    try {
      const data = await getSchedule();
      const next = data.enabled && data.next_run_time ? formatTime(data.next_run_time) : '';
      info.textContent = next ? t('nextReminder', { time: next }) : '';
      info.hidden = !next;
      if (next) info.title = `${data.cron || ''} (${data.timezone || ''})`;
    } catch {
      info.hidden = true;
    }
  }

  /** New reminder messages arrived: a desktop notification each, when turned on and the user looks elsewhere. */
  notify(messages) {
    if (!notificationsOn() || document.hasFocus()) return;
    for (const message of messages) {
      const text = message.content.replace(/[#*`>_[\]()]/g, '').slice(0, 180);
      try {
        new Notification(t('reminder'), { body: text, tag: `reminder-${message.id}` });
      } catch { /* e.g. Android Chrome allows notifications only from a service worker */ }
    }
  }

  /** The bell: asks for permission on this click only, then toggles reminder notifications. */
  async toggleNotifications() {
    if (!('Notification' in window)) {
      window.alert(t('notifyUnsupported'));
      return;
    }
    if (notificationsOn()) {
      localStorage.setItem(NOTIFY_KEY, '0');
    } else {
      const permission = Notification.permission === 'default'
        ? await Notification.requestPermission() : Notification.permission;
      if (permission !== 'granted') {
        window.alert(t('notifyDenied'));
        return;
      }
      localStorage.setItem(NOTIFY_KEY, '1');
    }
    this.#updateBell();
  }

  #updateBell() {
    const on = notificationsOn();
    this.#bell.setAttribute('aria-pressed', String(on));
    this.#bell.title = t(on ? 'notifyDisable' : 'notifyEnable');
    this.#bell.setAttribute('aria-label', this.#bell.title);
  }
}

function notificationsOn() {
  return 'Notification' in window && Notification.permission === 'granted' && localStorage.getItem(NOTIFY_KEY) === '1';
}
