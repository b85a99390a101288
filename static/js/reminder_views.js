/**
 * What a message shows about reminders: the confirmation card of each reminder action of a reply, and under a
 * reminder message its notes (late, not worded by the model) and its Done / Snooze buttons. Buttons send
 * bubbling events (REMINDER_EVENTS); reminder_thread.js answers them. The only state here is what the page
 * remembers about reminders: the list last loaded (for the notes) and which cards were undone (localStorage).
 */

import { LANG, t } from './i18n.js';
import { make } from './render.js';
import { actionKey, cardModel, formatRun, messageNotes } from './schedule.js';

export const REMINDER_EVENTS = Object.freeze({ undo: 'reminder-undo', done: 'reminder-done', snooze: 'reminder-snooze' });

const UNDONE_KEY = 'chat.undoneReminderActions';  // localStorage: keys of the cards whose Undo succeeded
const UNDONE_KEPT = 200;
let known = new Map();  // reminder id → the reminder, from the list the page loaded last

/** The reminders the page last loaded, for the notes under their messages. */
export function knowReminders(reminders) {
  known = new Map(reminders.map(reminder => [reminder.id, reminder]));
}

function undoneKeys() {
  try {
    const keys = JSON.parse(localStorage.getItem(UNDONE_KEY) ?? '[]');
    return Array.isArray(keys) ? keys : [];
  } catch {
    return [];
  }
}

export function isUndone(action) {
  return undoneKeys().includes(actionKey(action));
}

/** Remember that this action's Undo succeeded, so its card says so after a reload too. */
export function rememberUndone(action) {
  const keys = [...undoneKeys().filter(key => key !== actionKey(action)), actionKey(action)].slice(-UNDONE_KEPT);
  try {
    localStorage.setItem(UNDONE_KEY, JSON.stringify(keys));
  } catch { /* private mode: the card says it until the page reloads */ }
}

/** The id a reminder message's buttons act for: its reminder's, or `env` for the .env reminder's. */
export function senderOf(message) {
  return message?.is_scheduled ? (message.reminder_id ?? 'env') : null;
}

/** Draw (again) the reminder parts of a message element: the cards, then notes and buttons. */
export function renderReminderExtras(article, message) {
  article.querySelector('.reminder-cards')?.remove();
  article.querySelector('.reminder-controls')?.remove();
  const anchor = article.querySelector('.turn-error') ?? article.querySelector('.bubble');
  const actions = Array.isArray(message.reminder_actions) ? message.reminder_actions : [];
  if (actions.length) {
    const cards = make('div', 'reminder-cards');
    cards.append(...actions.map((action, index) => cardElement(action, index)));
    anchor.after(cards);
  }
  article.classList.toggle('done', Boolean(message.done_at));
  if (senderOf(message) && message.role === 'assistant') {
    article.querySelector('.reminder-cards, .turn-error, .bubble').after(controlsElement(message));
  }
}

/** One confirmation card: what, when, the next three times, Undo (or that it was undone). */
function cardElement(action, index) {
  const model = cardModel(action, { t, lang: LANG, undone: Boolean(action.undone) || isUndone(action) });
  const card = make('section', `reminder-card ${model.kind}${model.undone ? ' undone' : ''}`);
  card.dataset.index = String(index);
  const title = make('p', 'reminder-card-title', model.title);
  title.id = `reminder-card-${Math.random().toString(36).slice(2)}`;
  card.setAttribute('aria-labelledby', title.id);
  card.append(title, make('p', 'reminder-card-text', model.text));
  if (model.schedule) card.append(make('p', 'reminder-card-when', model.schedule));
  if (model.nextRuns.length && !model.undone) {
    const next = make('p', 'reminder-card-next', `${t('nextTimes')} `);
    model.nextRuns.forEach((run, position) => {
      if (position) next.append(' · ');
      next.append(make('time', '', run));
      next.lastChild.dateTime = action.reminder.next_runs[position];
    });
    card.append(next);
  }
  if (model.canUndo) {
    const undo = make('button', 'text-button reminder-undo', t('undo'));
    undo.type = 'button';
    undo.addEventListener('click', () => card.dispatchEvent(
      new CustomEvent(REMINDER_EVENTS.undo, { bubbles: true, detail: { index } }),
    ));
    card.append(undo);
  }
  card.append(errorLine());
  return card;
}

/** Under a reminder message: its notes, then Done (or done) and Snooze (or when it comes again). */
function controlsElement(message) {
  const box = make('div', 'reminder-controls');
  for (const note of messageNotes(message, known.get(senderOf(message)), t)) {
    box.append(make('p', `reminder-note ${note.kind}`, note.text));
  }
  const row = make('div', 'reminder-buttons');
  if (message.done_at) {
    const done = make('span', 'reminder-done-state', `✓ ${t('doneState')}`);
    done.title = formatRun(message.done_at, LANG);
    row.append(done);
  } else {
    row.append(eventButton('reminder-done', t('markDone'), REMINDER_EVENTS.done));
    if (!message.snoozed_until) row.append(eventButton('reminder-snooze', t('snooze'), REMINDER_EVENTS.snooze));
  }
  if (message.snoozed_until) {
    row.append(make('span', 'reminder-snoozed', t('snoozed', { time: formatRun(message.snoozed_until, LANG) })));
  }
  box.append(row, errorLine());
  return box;
}

function eventButton(className, label, eventName) {
  const button = make('button', `text-button ${className}`, label);
  button.type = 'button';
  button.addEventListener('click', () => button.dispatchEvent(new CustomEvent(eventName, { bubbles: true })));
  return button;
}

/** The line that shows why an action (Undo, Done, Snooze) failed. */
function errorLine() {
  const line = make('p', 'reminder-error');
  line.setAttribute('role', 'alert');
  line.hidden = true;
  return line;
}
