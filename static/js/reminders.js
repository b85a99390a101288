/**
 * Reminders on the page: the next fire times under the title, a warning when the last reminder failed,
 * the notification bell, desktop notifications.
 */

import { getSchedule } from './api.js';
import { t } from './i18n.js';
import { formatTime } from './render.js';

const NOTIFY_KEY = 'chat.notifyReminders';  // localStorage: '1' once the user turned notifications on
// A failed reminder adds no message for the poller to find, so the schedule is read again after each fire time.
const RECHECK_AFTER_FIRE_MS = 3_000;
const RECHECK_MIN_MS = 30_000;
const RECHECK_MAX_MS = 3_600_000;

export class Reminders {
  #scheduleInfo;
  #warning;
  #bell;
  #recheck = null;

  constructor({ scheduleInfo, warning, bell }) {
    this.#scheduleInfo = scheduleInfo;
    this.#warning = warning;
    this.#bell = bell;
    bell.addEventListener('click', () => this.toggleNotifications());
    this.#updateBell();
  }

  /** Show the next fire times under the title and warn when the last reminder failed (nothing when off). */
  async refreshSchedule() {
    const info = this.#scheduleInfo;
    clearTimeout(this.#recheck);
    let data;
    try {
      data = await getSchedule();
    } catch {
      info.hidden = true;
      return;
    }
    const upcoming = data.enabled ? (data.next_run_times ?? []).map(formatTime).filter(Boolean) : [];
    info.textContent = upcoming.length ? t('nextReminder', { time: upcoming.join(' · ') }) : '';
    info.hidden = !upcoming.length;
    if (upcoming.length) info.title = `${data.cron || ''} (${data.timezone || ''})`;

    const failed = data.enabled && data.last_run?.status === 'failed' ? data.last_run : null;
    this.#warning.textContent = failed
      ? t('reminderFailed', { time: formatTime(failed.scheduled_for || failed.time), reason: failed.error || '' })
      : '';
    this.#warning.hidden = !failed;

    if (upcoming.length) {
      const wait = Date.parse(data.next_run_times[0]) - Date.now() + RECHECK_AFTER_FIRE_MS;
      const delay = Math.min(Math.max(wait, RECHECK_MIN_MS), RECHECK_MAX_MS);
      this.#recheck = setTimeout(() => this.refreshSchedule(), delay);
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
