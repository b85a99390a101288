/** The create/edit form of the reminders panel: text, one-off or recurring schedule (with presets), mode, the push
channels it goes to, and the next three times previewed while the schedule is typed. */

import { changeReminder, createReminder, listChannels, previewSchedule } from './api.js';
import { serviceLabel } from './channel_views.js';
import { LANG, apiErrorText, t } from './i18n.js';
import { make } from './render.js';
import { CRON_PRESETS, debounce, formatRun, reminderFields } from './schedule.js';

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

export class ReminderForm {
  #el;
  #onSaved;
  #conversationId;
  #editing = null;  // the reminder the form edits; null while it creates one
  #previewCall = 0;  // numbers the preview requests: only the newest one's answer is shown
  #previewAbort = null;
  #schedulePreview = debounce(() => this.#preview(), PREVIEW_DELAY_MS);
  #channelsShown = false;  // the "Send to" field is filled: only then does a save send `channels`
  #channelsCall = 0;

  /**
   * `el`: the form and its fields (see index.html); `onSaved()`: a reminder was created or changed;
   * `conversationId()`: the conversation a new reminder speaks in (the one open; null: main).
   */
  constructor(el, { onSaved = () => {}, conversationId = () => null } = {}) {
    this.#el = el;
    this.#onSaved = onSaved;
    this.#conversationId = conversationId;
    el.cancel.addEventListener('click', () => this.close());
    el.form.addEventListener('submit', event => { event.preventDefault(); this.#save(); });
    el.form.addEventListener('input', event => {
      if (['kind', 'at', 'cron'].includes(event.target.name)) this.#schedulePreview();
      event.target.removeAttribute('aria-invalid');
      el.formError.hidden = true;  // the user is fixing it
    });
    el.form.addEventListener('change', event => {
      if (event.target.name === 'kind') this.#showKind();
      if (event.target.name === 'send-to') el.channels.hidden = event.target.value !== 'chosen';
    });
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

  /** Show the form for a new reminder (null) or to edit `reminder`, its text field focused. */
  open(reminder) {
    const el = this.#el;
    this.#editing = reminder;
    el.form.reset();
    el.formError.hidden = true;
    for (const field of el.form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
    el.formTitle.textContent = t(reminder ? 'editReminder' : 'newReminder');
    el.save.textContent = t(reminder ? 'save' : 'create');
    el.text.value = reminder?.text ?? '';
    el.mode.value = reminder?.mode ?? 'generate';
    el.form.elements.kind.value = reminder?.cron ? 'cron' : 'at';
    el.cron.value = reminder?.cron ?? '';
    el.at.value = reminder?.at ? reminder.at.slice(0, 16) : localInputValue(new Date(Date.now() + 3_600_000));
    el.form.hidden = false;
    this.#showKind();
    this.#showChannels(reminder);
    el.text.focus();
  }

  /** Fill "Send to" with the channels there are, ticking the reminder's; hidden while there is none to choose. */
  async #showChannels(reminder) {
    const el = this.#el;
    const call = ++this.#channelsCall;
    this.#channelsShown = false;
    el.sendTo.hidden = true;
    let channels;
    try {
      ({ channels } = await listChannels());
    } catch {
      return;  // the field stays hidden and a save leaves the reminder's channels as they are
    }
    if (call !== this.#channelsCall || el.form.hidden) return;
    const chosen = reminder?.channels ?? null;
    el.channels.replaceChildren(...channels.map(channel => {
      const box = make('input');
      box.type = 'checkbox';
      box.name = 'channel';
      box.value = channel.id;
      box.checked = chosen?.includes(channel.id) ?? false;
      const label = make('label', 'chip channel-choice');
      label.title = serviceLabel(channel, t);
      label.append(box, ` ${channel.name}`);
      return label;
    }));
    el.form.elements['send-to'].value = chosen === null ? 'all' : 'chosen';
    el.channels.hidden = chosen === null;
    el.sendTo.hidden = !channels.length;
    this.#channelsShown = channels.length > 0;
  }

  /** The `channels` to save: null for every channel, else the ids ticked; undefined when the field is not shown. */
  #chosenChannels() {
    const el = this.#el;
    if (!this.#channelsShown) return undefined;
    if (el.form.elements['send-to'].value !== 'chosen') return null;
    return [...el.channels.querySelectorAll('input:checked')].map(box => box.value);
  }

  close() {
    this.#schedulePreview.cancel();
    this.#previewAbort?.abort();
    this.#el.form.hidden = true;
    this.#editing = null;
    this.#channelsCall++;
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

  /** Create the reminder, or save the edit (sending the schedule only when it changed); a refusal says why. */
  async #save() {
    const el = this.#el;
    const fields = this.#fields();
    const channels = this.#chosenChannels();
    if (channels !== undefined) fields.channels = channels;
    const editing = this.#editing;
    el.save.disabled = true;
    el.formError.hidden = true;
    try {
      if (editing) {
        const changes = { text: fields.text, mode: fields.mode, channels: fields.channels };
        if (fields.cron !== undefined && fields.cron !== editing.cron) changes.cron = fields.cron;
        if (fields.at !== undefined && fields.at !== editing.at) changes.at = fields.at;
        await changeReminder(editing.id, changes);
      } else {
        const conversationId = this.#conversationId();
        await createReminder(conversationId ? { ...fields, conversation_id: conversationId } : fields);
      }
      this.close();
      this.#onSaved();
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
