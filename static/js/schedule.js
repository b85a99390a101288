/**
 * Reminders in words, free of the DOM: a schedule described ("every day at 08:00"), fire times formatted,
 * the confirmation card's model and its Undo request, the notes on a reminder message, a debounce.
 */

/** Recurring schedules offered as one-click presets in the create form. */
export const CRON_PRESETS = Object.freeze([
  { key: 'presetDaily', cron: '0 8 * * *' },
  { key: 'presetWeekdays', cron: '0 9 * * 1-5' },
  { key: 'presetWeekly', cron: '0 17 * * 5' },
  { key: 'presetHourly', cron: '0 * * * *' },
]);

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** A crontab weekday (0-7, or a name) as 0..6, Sunday 0; null if it is not one. */
function weekday(field) {
  const name = DAY_NAMES.indexOf(String(field).toLowerCase().slice(0, 3));
  if (name >= 0 && /^[a-z]+$/i.test(field)) return name;
  if (!/^\d$/.test(field) || Number(field) > 7) return null;
  return Number(field) % 7;
}

const twoDigits = value => String(value).padStart(2, '0');

/**
 * A five-field crontab (or the .env reminder's six, seconds first) in words, for the common shapes:
 * every day, weekdays, weekends, some weekdays, every month on a day, every hour. Anything else is
 * shown as given. `t` is the translator (i18n.js); weekday names come from its `weekdays` string.
 */
export function describeCron(cron, t) {
  let fields = String(cron ?? '').trim().split(/\s+/);
  if (fields.length === 6 && fields[0] === '0') fields = fields.slice(1);
  if (fields.length !== 5) return String(cron ?? '');
  const [minute, hour, day, month, dow] = fields;
  if (!/^\d{1,2}$/.test(minute) || month !== '*') return fields.join(' ');
  if (hour === '*' && day === '*' && dow === '*') return t('cronHourly', { minute: twoDigits(minute) });
  if (!/^\d{1,2}$/.test(hour)) return fields.join(' ');
  const time = `${twoDigits(hour)}:${twoDigits(minute)}`;
  if (day !== '*') {
    return /^\d{1,2}$/.test(day) && dow === '*' ? t('cronMonthly', { day, time }) : fields.join(' ');
  }
  if (dow === '*') return t('cronDaily', { time });
  if (dow === '1-5' || dow.toLowerCase() === 'mon-fri') return t('cronWeekdays', { time });
  if (['0,6', '6,0', '6,7', 'sat,sun', 'sun,sat'].includes(dow.toLowerCase())) return t('cronWeekends', { time });
  const days = dow.split(',').map(weekday);
  if (days.includes(null)) return fields.join(' ');
  const names = t('weekdays').split(',');
  return t('cronWeekly', { days: days.map(d => names[d]).join(t('listSeparator')), time });
}

/** A reminder's schedule in words: once at its local time, or its cron described. */
export function describeSchedule(reminder, t, lang) {
  if (reminder.at) return t('scheduleOnce', { time: formatRun(reminder.at, lang) });
  return describeCron(reminder.cron, t);
}

/**
 * A fire time (ISO, with or without offset) in the viewer's local time: "11月26日周四 08:00" / "Thu, Nov 26, 08:00",
 * with the year only when it is not this year's.
 */
export function formatRun(iso, lang, now = new Date()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso ?? '');
  const options = { weekday: 'short', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' };
  if (date.getFullYear() !== now.getFullYear()) options.year = 'numeric';
  if (date.getSeconds()) options.second = '2-digit';
  return new Intl.DateTimeFormat(lang, options).format(date);
}

/** The fields that re-create a reminder as it was (for Undo of a cancel, and a PATCH back to `previous`). */
const EDITABLE = ['text', 'at', 'cron', 'timezone', 'mode', 'enabled'];

function editable(fields) {
  const kept = {};
  for (const key of EDITABLE) {
    if (fields?.[key] !== undefined && fields[key] !== null) kept[key] = fields[key];
  }
  return kept;
}

/**
 * The request that undoes one of a reply's reminder actions (`{action, reminder, previous}`, see the API):
 * created → DELETE it; cancelled → POST it again; updated → PATCH it back to `previous`. Null if it cannot be.
 */
export function undoRequest(action) {
  const id = action?.reminder?.id;
  if (!id || id === 'env') return null;
  const path = `/api/reminders/${encodeURIComponent(id)}`;
  switch (action.action) {
    case 'created': return { method: 'DELETE', path };
    case 'cancelled': return { method: 'POST', path: '/api/reminders', body: editable(action.reminder) };
    case 'updated': return action.previous ? { method: 'PATCH', path, body: editable(action.previous) } : null;
    default: return null;
  }
}

/** A key naming one action for the "undone" memory: the same action on the same reminder is the same card. */
export function actionKey(action) {
  const previous = action?.previous ? JSON.stringify(editable(action.previous)) : '';
  return `${action?.action}:${action?.reminder?.id}:${action?.reminder?.created_at ?? ''}:${previous}`;
}

/**
 * What a confirmation card shows for one action: its title, the reminder's text, its schedule in words, the
 * next three times, and whether Undo is offered (and already done).
 */
export function cardModel(action, { t, lang, undone = false }) {
  const reminder = action?.reminder ?? {};
  const kind = ['created', 'updated', 'cancelled'].includes(action?.action) ? action.action : 'created';
  return {
    kind,
    title: t(undone ? `card_${kind}_undone` : `card_${kind}`),
    text: String(reminder.text ?? ''),
    schedule: reminder.at || reminder.cron ? describeSchedule(reminder, t, lang) : '',
    nextRuns: kind === 'cancelled' ? [] : (reminder.next_runs ?? []).slice(0, 3).map(run => formatRun(run, lang)),
    canUndo: !undone && undoRequest(action) !== null,
    undone,
  };
}

/**
 * The notes under a reminder message: sent late, and not worded by the model because the model failed
 * (`generated: false` of a `generate` reminder; the reason when its last run was this message).
 */
export function messageNotes(message, reminder, t) {
  const notes = [];
  if (!message?.is_scheduled) return notes;
  if (message.late) notes.push({ kind: 'late', text: t('noteLate') });
  const failedRun = reminder?.last_run?.message_id === message.id && reminder.last_run.status === 'failed'
    ? reminder.last_run : null;
  if (message.generated === false && (failedRun || reminder?.mode === 'generate')) {
    notes.push({ kind: 'not-generated', text: t('noteNotGenerated', { reason: failedRun?.error ?? '' }).trim() });
  }
  return notes;
}

/** The warning a reminder's last run deserves (failed or missed), or null. */
export function lastRunWarning(reminder, t, lang) {
  const run = reminder?.last_run;
  if (!run || !['failed', 'missed'].includes(run.status)) return null;
  const when = run.scheduled_for && !run.scheduled_for.startsWith('manual-') ? run.scheduled_for : run.time;
  return t(run.status === 'missed' ? 'lastRunMissed' : 'lastRunFailed', {
    time: formatRun(when, lang), reason: run.error ?? '',
  });
}

/**
 * The body a create or edit form sends: text, one schedule (`at` from a datetime-local value, or `cron`), mode,
 * and for a new reminder the viewer's zone.
 */
export function reminderFields({ text, kind, at, cron, mode, timezone }) {
  const fields = { text: String(text ?? '').trim(), mode: mode === 'plain' ? 'plain' : 'generate' };
  if (kind === 'cron') fields.cron = String(cron ?? '').trim();
  else fields.at = at && /T\d\d:\d\d$/.test(at) ? `${at}:00` : String(at ?? '');
  if (timezone) fields.timezone = timezone;
  return fields;
}

/** `fn` called once calls stop for `ms`; .cancel() drops a pending call. */
export function debounce(fn, ms, timers = globalThis) {
  let timer = null;
  const debounced = (...args) => {
    timers.clearTimeout(timer);
    timer = timers.setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  debounced.cancel = () => { timers.clearTimeout(timer); timer = null; };
  return debounced;
}
