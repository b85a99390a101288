/** Wiring: the only file that looks up the page's elements; hands them to the modules and runs the first load. */

import { authEvents, clearHistory, getHealth } from './api.js';
import { ChannelPanel } from './channel_panel.js';
import { Chat } from './chat.js';
import { Composer } from './composer.js';
import { MessageHistory } from './history.js';
import { applyTranslations, errorText, t } from './i18n.js';
import { Login } from './login.js';
import { Poller, pollInterval } from './poll.js';
import { PushBell } from './push.js';
import { Reminders } from './reminders.js';
import { configureSanitizer, noteReasoningToggle } from './render.js';
import { ReminderPanel } from './reminder_panel.js';
import { ReminderThread } from './reminder_thread.js';
import { Thread } from './thread.js';

const byId = id => document.getElementById(id);
const root = document.documentElement;

/** <html data-ready> marks the end of a load (the browser tests wait for it). */
function markReady(done) {
  if (done) root.dataset.ready = '1';
  else delete root.dataset.ready;
}

applyTranslations(document);
configureSanitizer();

const server = { configured: true, authRequired: false };  // from /api/health
let chatReady = false;  // no sending until the history is on screen, so loading it cannot wipe a new turn

const scroller = byId('messages');
const banner = byId('config-banner');
const logoutButton = byId('logout');
const thread = new Thread({ scroller, list: byId('message-list'), empty: byId('empty'), edge: byId('history-edge') });
const messageHistory = new MessageHistory({ onChange: () => thread.updateEdge(messageHistory) });
const composer = new Composer(
  { form: byId('composer'), input: byId('input'), send: byId('send'), stop: byId('stop'), counter: byId('char-count') },
  { onSubmit: submitInput, onStop: () => chat.stop() },
);
const chat = new Chat({
  thread, history: messageHistory, composer, onTurnEnd: () => poller.soon(), onReminder: () => reminderPanel.load(),
});
const reminders = new Reminders({
  scheduleInfo: byId('schedule-info'), warning: byId('reminder-warning'), bell: byId('notify-toggle'),
});
const pushBell = new PushBell({ button: byId('push-toggle') });
const reminderPanel = new ReminderPanel({
  dialog: byId('reminders-panel'), openButton: byId('reminders-open'), closeButton: byId('reminders-close'),
  newButton: byId('reminder-new'), status: byId('reminders-status'), list: byId('reminder-list'),
  form: byId('reminder-form'), formTitle: byId('reminder-form-title'), formError: byId('reminder-form-error'),
  text: byId('reminder-text'), at: byId('reminder-at'), cron: byId('reminder-cron'), mode: byId('reminder-mode'),
  atRow: byId('reminder-at-row'), cronRow: byId('reminder-cron-row'), presets: byId('reminder-presets'),
  preview: byId('reminder-preview'), previewList: byId('reminder-preview-list'),
  save: byId('reminder-save'), cancel: byId('reminder-cancel'),
  sendTo: byId('reminder-send-to'), channels: byId('reminder-channels'),
}, {
  onChange: () => reminderThread.refresh(),
  onSent: () => poller.soon(0),
});
new ChannelPanel({
  dialog: byId('channels-panel'), openButton: byId('channels-open'), closeButton: byId('channels-close'),
  newButton: byId('channel-new'), status: byId('channels-status'), list: byId('channel-list'),
  form: byId('channel-form'), formTitle: byId('channel-form-title'), formError: byId('channel-form-error'),
  name: byId('channel-name'), url: byId('channel-url'), nameError: byId('channel-name-error'),
  urlError: byId('channel-url-error'), save: byId('channel-save'), cancel: byId('channel-cancel'),
}, { onDeleted: channel => pushBell.forget(channel.id).catch(() => {}) });
const reminderThread = new ReminderThread({
  thread, list: byId('message-list'), onChange: () => reminderPanel.load(),
});
const poller = new Poller(pollNewMessages, pollInterval(location.search, root.dataset.pollMs));
const login = new Login(
  { app: byId('app'), panel: byId('login'), form: byId('login-form'), token: byId('token'), error: byId('login-error') },
  { onShow: () => { chat.stop(); poller.stop(); }, onLoggedIn: start, markReady },
);

function submitInput() {
  if (chat.busy || !chatReady || !server.configured || composer.tooLong) return;  // the counter says why
  chat.submit(composer.text);
}

function loadOlder() {
  return messageHistory.loadOlder(messages => thread.prepend(messages));
}

/** The newest page, scrolled to its end, then older pages until they fill the screen. */
async function loadConversation() {
  const messages = await messageHistory.loadNewest();
  thread.replace(messages);
  thread.updateEdge(messageHistory);
  thread.scrollToBottom();
  chat.offerRetryOf(thread.failedTurn());  // a turn that failed before this load can still be retried
  while (messageHistory.canLoadOlder && thread.underfilled()) await loadOlder();
}

/** Messages newer than the newest shown (reminders, other tabs): add them, notify about reminders. */
async function pollNewMessages() {
  if (chat.busy || login.shown) return;
  for await (const fresh of messageHistory.newerPages()) {
    const stick = thread.nearBottom();
    const shown = thread.append(fresh);
    chat.noteNewMessages(shown);
    if (stick && shown.length) thread.scrollToBottom();
    const newReminders = shown.filter(message => message.is_scheduled);
    if (newReminders.length) {
      reminders.notify(newReminders);
      reminders.refreshSchedule();
      reminderPanel.load();  // their last results, and the notes under them
    }
  }
}

/** Ask, confirm, then clear the conversation on the server and on the page. */
async function clearConversation() {
  if (chat.busy || !window.confirm(t('confirmClear'))) return;
  await clearHistory();
  thread.clear();
  messageHistory.cleared();
}

/** What the server says about itself: is chat configured, is a login needed. */
async function loadHealth() {
  try {
    const data = await getHealth();
    server.configured = data.chat_configured !== false;
    server.authRequired = data.auth_required === true;
    composer.setLimit(data.max_message_chars);
  } catch { /* the history request will tell */ }
  banner.hidden = server.configured;
  logoutButton.hidden = !server.authRequired;
  composer.setConfigured(server.configured);
}

/** Load what the chat shows; a 401 on the way shows the login form instead. */
async function start() {
  chatReady = false;
  await loadHealth();
  try {
    await loadConversation();
  } catch (error) {
    if (error.status !== 401) thread.showEdgeError(errorText(error.code));
  }
  markReady(true);
  if (login.shown) return;
  chatReady = true;
  pushBell.load();
  reminders.refreshSchedule();
  reminderPanel.load();
  poller.start();
}

authEvents.addEventListener('unauthorized', () => login.show());
document.addEventListener('keydown', event => { if (event.key === 'Escape') chat.stop(); });
document.addEventListener('visibilitychange', () => { if (!document.hidden && !login.shown) poller.soon(); });
scroller.addEventListener('scroll', () => { if (thread.nearTop()) loadOlder().catch(() => {}); }, { passive: true });
scroller.addEventListener('toggle', noteReasoningToggle, true);  // toggle does not bubble: listen while capturing
byId('new-chat').addEventListener('click', () => clearConversation().catch(() => {}));
logoutButton.addEventListener('click', () => login.logOut());

start();
composer.focus();
