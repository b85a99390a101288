/**
 * The reminders panel (a modal <dialog> from the header): every reminder with its schedule in words, next time
 * and last result; pause/resume, edit, delete, send now; and the create/edit form with a live preview of the
 * next three times.
 */

import {
  changeReminder, createReminder, deleteReminder, listReminders, previewSchedule, runReminder,
} from './api.js';
import { LANG, apiErrorText, t } from './i18n.js';
import { make } from './render.js';
import { knowReminders } from './reminder_views.js';
import {
  CRON_PRESETS, debounce, describeSchedule, formatRun, lastRunWarning, reminderFields,
} from './schedule.js';

const PREVIEW_DELAY_MS = 300;
// Which form field an error code is about, so it can be marked invalid (and focused).
const FIELD_OF_CODE = {
  empty_text: 'text', missing_text: 'text', invalid_text: 'text',
  invalid_at: 'at', at_in_past: 'at', invalid_cron: 'cron', invalid_schedule: 'schedule',
};

/** The viewer's IANA zone: a new reminder fires at the user's local time. */
function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || undefined;
}

/** A datetime-local value for `date` (local time, to the minute). */
function localInputValue(date) {
  const pad = value => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export class ReminderPanel {
  #el;
  #onChange;
  #onSent;
  #reminders = [];
  #editing = null;  // the reminder the form edits; null while it creates one
  #previewCall = 0;  // numbers the preview requests: only the newest one's answer is shown
  #previewAbort = null;
  #schedulePreview = debounce(() => this.#preview(), PREVIEW_DELAY_MS);

  /**
   * `el`: the dialog and its parts (see index.html); `onChange(reminders)`: the list was (re)loaded;
   * `onSent()`: a reminder was sent now, so its message is in the conversation.
   */
  constructor(el, { onChange = () => {}, onSent = () => {} } = {}) {
    this.#el = el;
    this.#onChange = onChange;
    this.#onSent = onSent;
    el.openButton.addEventListener('click', () => this.open());
    el.closeButton.addEventListener('click', () => this.close());
    el.dialog.addEventListener('click', event => { if (event.target === el.dialog) this.close(); });  // the backdrop
    el.dialog.addEventListener('close', () => { this.#closeForm(); el.openButton.focus(); });
    el.newButton.addEventListener('click', () => this.#openForm(null));
    el.cancel.addEventListener('click', () => this.#closeForm());
    el.form.addEventListener('submit', event => { event.preventDefault(); this.#save(); });
    el.form.addEventListener('input', event => {
      if (event.target.name !== 'text' && event.target.name !== 'mode') this.#schedulePreview();
      event.target.removeAttribute('aria-invalid');
      el.formError.hidden = true;  // the user is fixing it
    });
    el.form.addEventListener('change', event => { if (event.target.name === 'kind') this.#showKind(); });
    for (const preset of CRON_PRESETS) {
      const button = make('button', 'chip', t(preset.key));
      button.type = 'button';
      button.dataset.cron = preset.cron;
      button.addEventListener('click', () => {
        el.cron.value = preset.cron;
        el.cron.removeAttribute('aria-invalid');
        this.#preview();
      });
      el.presets.append(button);
    }
  }

  get isOpen() {
    return this.#el.dialog.open;
  }

  /** Show the panel (focus on its first control) and load the list. */
  open() {
    this.#status('');
    if (!this.isOpen) this.#el.dialog.showModal();
    this.#el.newButton.focus();
    return this.load();
  }

  close() {
    this.#el.dialog.close();
  }

  /** Load the reminders and draw them; tells onChange, also while the panel is closed (the thread's notes). */
  async load() {
    try {
      const { reminders } = await listReminders();
      this.#reminders = reminders;
      if (this.#el.status.classList.contains('failed')) this.#status('');
    } catch (error) {
      this.#status(t('remindersLoadFailed', { reason: apiErrorText(error) }), { failed: true });
      return;
    }
    knowReminders(this.#reminders);
    this.#drawList();
    this.#onChange(this.#reminders);
  }

  /** The line above the list: a load failure, or what a button did (e.g. sent now). */
  #status(text, { failed = false } = {}) {
    this.#el.status.textContent = text;
    this.#el.status.hidden = !text;
    this.#el.status.classList.toggle('failed', failed);
  }

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
    const item = make('li', 'reminder-item');
    item.dataset.id = reminder.id;
    item.classList.toggle('paused', !reminder.enabled);
    item.classList.toggle('failed', Boolean(warning));

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

    const buttons = make('div', 'reminder-buttons');
    if (!readOnly && !reminder.done) {
      buttons.append(this.#button(t(reminder.enabled ? 'pause' : 'resume'), 'toggle',
        () => changeReminder(reminder.id, { enabled: !reminder.enabled })));
    }
    buttons.append(this.#button(t('runNow'), 'run', async () => {
      await runReminder(reminder.id);
      this.#status(t('sentNow'));
      this.#onSent();
    }));
    if (!readOnly) {
      buttons.append(this.#button(t('edit'), 'edit', () => this.#openForm(reminder), { reload: false }));
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

  // ---- the form ----------------------------------------------------------------------------

  #openForm(reminder) {
    const el = this.#el;
    this.#editing = reminder;
    el.form.reset();
    el.formError.hidden = true;
    for (const field of el.form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
    el.formTitle.textContent = t(reminder ? 'editReminder' : 'newReminder');
    el.save.textContent = t(reminder ? 'save' : 'create');
    el.text.value = reminder?.text ?? '';
    el.mode.value = reminder?.mode ?? 'generate';
    const kind = reminder?.cron ? 'cron' : 'at';
    el.form.elements.kind.value = kind;
    el.cron.value = reminder?.cron ?? '';
    el.at.value = reminder?.at ? reminder.at.slice(0, 16) : localInputValue(new Date(Date.now() + 3_600_000));
    el.form.hidden = false;
    this.#showKind();
    el.text.focus();
  }

  #closeForm() {
    this.#schedulePreview.cancel();
    this.#previewAbort?.abort();
    this.#el.form.hidden = true;
    this.#editing = null;
  }

  #showKind() {
    const cron = this.#el.form.elements.kind.value === 'cron';
    this.#el.atRow.hidden = cron;
    this.#el.cronRow.hidden = !cron;
    this.#preview();
  }

  /** The form's fields as the API takes them (a new reminder in the viewer's zone). */
  #fields() {
    const el = this.#el;
    return reminderFields({
      text: el.text.value, kind: el.form.elements.kind.value, at: el.at.value, cron: el.cron.value,
      mode: el.mode.value, timezone: this.#editing ? undefined : browserZone(),
    });
  }

  /** Ask for the next three times of the schedule being typed; show them, or why it is refused. */
  async #preview() {
    this.#schedulePreview.cancel();
    this.#previewAbort?.abort();
    const call = ++this.#previewCall;
    const { at, cron } = this.#fields();
    const list = this.#el.previewList;
    const box = this.#el.preview;
    if (!at && !cron) {
      list.replaceChildren();
      box.classList.remove('refused');
      return;
    }
    const abort = new AbortController();
    this.#previewAbort = abort;
    box.setAttribute('aria-busy', 'true');
    try {
      const timezone = this.#editing?.timezone ?? browserZone();
      const { next_runs: runs } = await previewSchedule({ at, cron, timezone }, { signal: abort.signal });
      if (call !== this.#previewCall) return;
      box.classList.remove('refused');
      list.replaceChildren(...(runs.length ? runs : [null]).map(run => {
        const item = make('li', '', run ? formatRun(run, LANG) : t('previewNone'));
        if (run) item.dataset.time = run;
        return item;
      }));
    } catch (error) {
      if (error?.name === 'AbortError' || call !== this.#previewCall) return;
      box.classList.add('refused');
      list.replaceChildren(make('li', 'preview-error', apiErrorText(error)));
    } finally {
      if (call === this.#previewCall) box.removeAttribute('aria-busy');
    }
  }

  /** Create the reminder, or save the edit (sending the schedule only when it changed), then reload. */
  async #save() {
    const el = this.#el;
    const fields = this.#fields();
    const editing = this.#editing;
    el.save.disabled = true;
    el.formError.hidden = true;
    try {
      if (editing) {
        const changes = { text: fields.text, mode: fields.mode };
        if (fields.cron !== undefined && fields.cron !== editing.cron) changes.cron = fields.cron;
        if (fields.at !== undefined && fields.at !== editing.at) changes.at = fields.at;
        await changeReminder(editing.id, changes);
      } else {
        await createReminder(fields);
      }
      this.#closeForm();
      await this.load();
      el.newButton.focus();
    } catch (error) {
      el.formError.textContent = apiErrorText(error);
      el.formError.hidden = false;
      const field = { text: el.text, at: el.at, cron: el.cron }[FIELD_OF_CODE[error.code]];
      field?.setAttribute('aria-invalid', 'true');
      field?.focus();
    } finally {
      el.save.disabled = false;
    }
  }
}
