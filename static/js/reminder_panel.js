/**
 * The reminders panel (a modal <dialog> from the header): every reminder with its schedule in words, next time
 * and last result; pause/resume, edit, delete, send now; and a ReminderForm to create or edit one.
 */

import { changeReminder, deleteReminder, listReminders, runReminder } from './api.js';
import { pushOutcome } from './channel_views.js';
import { LANG, apiErrorText, t } from './i18n.js';
import { Drawer } from './drawer.js';
import { make } from './render.js';
import { ReminderForm } from './reminder_form.js';
import { knowReminders } from './reminder_views.js';
import { describeSchedule, formatRun, lastRunWarning } from './schedule.js';

export class ReminderPanel {
  #el;
  #drawer;
  #onChange;
  #onSent;
  #reminders = [];
  #form;

  /**
   * `el`: the dialog and its parts (see index.html); `onChange(reminders)`: the list was (re)loaded;
   * `onSent()`: a reminder was sent now, so its message is in the conversation; `conversationId()`: where a
   * new reminder speaks (the conversation open).
   */
  constructor(el, { onChange = () => {}, onSent = () => {}, conversationId = () => null } = {}) {
    this.#el = el;
    this.#onChange = onChange;
    this.#onSent = onSent;
    this.#form = new ReminderForm(el, {
      onSaved: () => this.load().then(() => el.newButton.focus()), conversationId,
    });
    this.#drawer = new Drawer(el, { onOpen: () => this.load(), onClose: () => this.#form.close() });
    el.newButton.addEventListener('click', () => this.#form.open(null));
  }

  /** Load the reminders and draw them; tells onChange, also while the panel is closed (the thread's notes). */
  async load() {
    try {
      const { reminders } = await listReminders();
      this.#reminders = reminders;
      this.#drawer.clearFailure();
    } catch (error) {
      this.#drawer.status(t('remindersLoadFailed', { reason: apiErrorText(error) }), { failed: true });
      return;
    }
    knowReminders(this.#reminders);
    this.#drawList();
    this.#onChange(this.#reminders);
  }

  /** The line above the list: a load failure, or what a button did (e.g. sent now). */
  // ---- the list ----------------------------------------------------------------------------

  #drawList() {
    const items = this.#reminders.map(reminder => this.#item(reminder));
    if (!items.length || (items.length === 1 && this.#reminders[0].id === 'env' && !this.#reminders[0].enabled)) {
      items.push(make('li', 'reminder-empty', t('remindersEmpty')));
    }
    this.#el.list.replaceChildren(...items);
  }

  #item(reminder) {
    const readOnly = reminder.source === 'env';
    const warning = lastRunWarning(reminder, t, LANG);
    const pushed = pushOutcome(reminder.last_run, t);
    const item = make('li', 'reminder-item');
    item.dataset.id = reminder.id;
    item.classList.toggle('paused', !reminder.enabled);
    item.classList.toggle('failed', Boolean(warning) || pushed.warnings.length > 0);

    const head = make('div', 'reminder-head');
    const text = make('p', 'reminder-text', reminder.text);
    text.id = `reminder-text-${reminder.id}`;  // each button's description: which reminder it acts on
    head.append(text);
    if (readOnly) head.append(make('span', 'tag', t('readOnly')));
    if (!reminder.enabled) head.append(make('span', 'tag paused', t('paused')));
    item.append(head);

    const mode = t(reminder.mode === 'plain' ? 'modePlainShort' : 'modeGenerateShort');
    const schedule = make('p', 'reminder-schedule', `${describeSchedule(reminder, t, LANG)} · ${mode}`);
    schedule.title = reminder.at ? `${reminder.at} (${reminder.timezone})` : `${reminder.cron} (${reminder.timezone})`;
    item.append(schedule);
    const next = reminder.next_runs?.[0];
    if (next) {
      const line = make('p', 'reminder-next', t('nextRun', { time: '' }));
      const time = make('time', '', formatRun(next, LANG));
      time.dateTime = next;
      line.append(time);
      item.append(line);
    } else if (reminder.done) {
      item.append(make('p', 'reminder-next', t('oneOffDone')));
    }
    if (warning) {
      item.append(make('p', 'reminder-warning', warning));
    } else if (reminder.last_run?.status === 'ok') {
      const last = reminder.last_run;
      item.append(make('p', 'reminder-last', t('lastRunOk', { time: formatRun(last.time, LANG) })));
    }
    for (const line of pushed.warnings) item.append(make('p', 'reminder-warning push-warning', line));
    if (pushed.sent && !pushed.warnings.length) item.append(make('p', 'reminder-last push-sent', t('pushSent', { count: pushed.sent })));

    const buttons = make('div', 'reminder-buttons');
    if (!readOnly && !reminder.done) {
      buttons.append(this.#button(t(reminder.enabled ? 'pause' : 'resume'), 'toggle',
        () => changeReminder(reminder.id, { enabled: !reminder.enabled })));
    }
    buttons.append(this.#button(t('runNow'), 'run', async () => {
      await runReminder(reminder.id);
      this.#drawer.status(t('sentNow'));
      this.#onSent();
    }));
    if (!readOnly) {
      buttons.append(this.#button(t('edit'), 'edit', () => this.#form.open(reminder), { reload: false }));
      buttons.append(this.#button(t('delete'), 'delete', async () => {
        if (!window.confirm(t('confirmDelete', { text: reminder.text }))) return;
        await deleteReminder(reminder.id);
      }));
    }
    for (const button of buttons.children) button.setAttribute('aria-describedby', text.id);
    item.append(buttons, make('p', 'reminder-error'));
    item.lastChild.setAttribute('role', 'alert');
    item.lastChild.hidden = true;
    return item;
  }

  /** A list button: runs `action` disabled, then reloads the list; a failure shows under the reminder. */
  #button(label, name, action, { reload = true } = {}) {
    const button = make('button', `text-button reminder-${name}`, label);
    button.type = 'button';
    button.addEventListener('click', async () => {
      const error = button.closest('li').querySelector('.reminder-error');
      button.disabled = true;
      try {
        await action();
        if (reload) await this.load();
      } catch (failure) {
        error.textContent = apiErrorText(failure);
        error.hidden = false;
        if (failure.code === 'reminder_not_found') await this.load();
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }
}
