/** The reminder buttons in the thread: a card's Undo, a reminder message's Done and Snooze. */

import { callApi, markReminderDone, snoozeReminder } from './api.js';
import { apiErrorText } from './i18n.js';
import { updateMessageElement } from './render.js';
import { REMINDER_EVENTS, rememberUndone, renderReminderExtras, senderOf } from './reminder_views.js';
import { undoRequest } from './schedule.js';

export const SNOOZE_MINUTES = 10;

export class ReminderThread {
  #onChange;
  #list;
  #conversationId;

  /**
   * `thread`: the Thread (its events); `list`: the messages' parent; `onChange()`: the reminders changed;
   * `conversationId()`: the conversation shown, where the messages are.
   */
  constructor({ thread, list, onChange = () => {}, conversationId = () => null }) {
    this.#list = list;
    this.#onChange = onChange;
    this.#conversationId = conversationId;
    thread.listen(REMINDER_EVENTS.undo, event => this.#act(event, () => this.#undo(event)));
    thread.listen(REMINDER_EVENTS.done, event => this.#act(event, () => this.#done(event)));
    thread.listen(REMINDER_EVENTS.snooze, event => this.#act(event, () => this.#snooze(event)));
  }

  /** Draw the reminder parts of every message again (the list of reminders changed: notes may differ). */
  refresh() {
    for (const article of this.#list.querySelectorAll('article.message.assistant')) {
      if (article.message && article.dataset.id) renderReminderExtras(article, article.message);
    }
  }

  /** Run one button's action with the button disabled; a failure is shown under it, in the user's language. */
  async #act(event, action) {
    const button = event.target.closest('button') ?? event.target.querySelector?.('button');
    const box = event.target.closest('.reminder-card, .reminder-controls');
    const errorLine = box?.querySelector('.reminder-error');
    if (button) button.disabled = true;
    try {
      await action();
      this.#onChange();
    } catch (error) {
      if (errorLine) {
        errorLine.textContent = apiErrorText(error);
        errorLine.hidden = false;
      }
      if (button) button.disabled = false;
    }
  }

  async #undo(event) {
    const article = event.target.closest('article');
    const index = event.detail.index;
    const action = article.message.reminder_actions[index];
    const request = undoRequest(action);
    try {
      await callApi(request);
    } catch (error) {
      if (!(action.action === 'created' && error.code === 'reminder_not_found')) throw error;  // already gone: undone
    }
    rememberUndone(action);
    const actions = article.message.reminder_actions.map((each, i) => (i === index ? { ...each, undone: true } : each));
    this.#redraw(article, { ...article.message, reminder_actions: actions });
  }

  async #done(event) {
    const article = event.target.closest('article');
    const { message } = await markReminderDone(senderOf(article.message), article.message.id,
      { conversationId: this.#conversationId() });
    this.#redraw(article, { ...article.message, ...message });
  }

  async #snooze(event) {
    const article = event.target.closest('article');
    const { reminder } = await snoozeReminder(senderOf(article.message), article.message.id, SNOOZE_MINUTES,
      { conversationId: this.#conversationId() });
    this.#redraw(article, { ...article.message, snoozed_until: reminder.next_runs[0] ?? null });
  }

  /** A reply still streaming keeps its text; a stored message is drawn whole again. */
  #redraw(article, message) {
    if (article.dataset.id) updateMessageElement(article, message);
    else {
      article.message = message;
      renderReminderExtras(article, message);
    }
  }
}
