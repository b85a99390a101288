/** Wiring: the only file that looks up the page's elements; hands them to the modules and runs the first load. */

import { authEvents, clearHistory, getHealth, getHistory } from './api.js';
import { ChannelPanel } from './channel_panel.js';
import { Chat } from './chat.js';
import { Composer } from './composer.js';
import { ConversationSearch } from './conversation_search.js';
import { ConversationTransfer } from './conversation_transfer.js';
import { MAIN_ID, conversationFromSearch, searchFor } from './conversations.js';
import { MessageHistory } from './history.js';
import { applyTranslations, errorText, t } from './i18n.js';
import { Login } from './login.js';
import { Poller, pollInterval } from './poll.js';
import { PushBell } from './push.js';
import { Reminders } from './reminders.js';
import { configureSanitizer, noteReasoningToggle } from './render.js';
import { ReminderPanel } from './reminder_panel.js';
import { ReminderThread } from './reminder_thread.js';
import { SideDrawer } from './side_drawer.js';
import { Sidebar } from './sidebar.js';
import { Thread } from './thread.js';
import { UsageMenu } from './usage.js';

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
let conversationId = MAIN_ID;  // the conversation open: the address names it (?c=), every call carries it
const FOUND_HIGHLIGHT_MS = 2500;  // how long a message opened from a search result stays marked
const NOTICE_MS = 8000;

const scroller = byId('messages');
const banner = byId('config-banner');
const logoutButton = byId('logout');
const thread = new Thread({ scroller, list: byId('message-list'), empty: byId('empty'), edge: byId('history-edge') });
let messageHistory = historyOf(conversationId);
const composer = new Composer(
  { form: byId('composer'), input: byId('input'), send: byId('send'), stop: byId('stop'), counter: byId('char-count') },
  { onSubmit: submitInput, onStop: () => chat.stop() },
);
const chat = new Chat({
  thread, history: messageHistory, composer, onTurnEnd: () => poller.soon(), onReminder: () => reminderPanel.load(),
  onFollowedEnd: message => { if (message?.is_scheduled) noteNewReminders([message]); },
  conversationId: () => conversationId,
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
  conversationId: () => conversationId,
});
new ChannelPanel({
  dialog: byId('channels-panel'), openButton: byId('channels-open'), closeButton: byId('channels-close'),
  newButton: byId('channel-new'), status: byId('channels-status'), list: byId('channel-list'),
  form: byId('channel-form'), formTitle: byId('channel-form-title'), formError: byId('channel-form-error'),
  name: byId('channel-name'), url: byId('channel-url'), nameError: byId('channel-name-error'),
  urlError: byId('channel-url-error'), save: byId('channel-save'), cancel: byId('channel-cancel'),
}, { onDeleted: channel => pushBell.forget(channel.id).catch(() => {}) });
const reminderThread = new ReminderThread({
  thread, list: byId('message-list'), onChange: () => reminderPanel.load(), conversationId: () => conversationId,
});
const sidebar = new Sidebar({ list: byId('conversation-list'), newButton: byId('conversation-new'), status: byId('sidebar-status') }, {
  open: id => { drawer.close({ refocus: false }); openConversation(id).then(() => composer.focus()); },
  deleted: id => { if (id === conversationId) openConversation(MAIN_ID, { how: 'replace' }); },
  changed: () => showTitle(),
  openIsEmpty: () => chatReady && !chat.busy && !byId('message-list').children.length,
  clear: id => clearConversation(id).catch(() => {}),
});
const drawer = new SideDrawer({
  sidebar: byId('sidebar'), openButton: byId('sidebar-open'), closeButton: byId('sidebar-close'),
  backdrop: byId('sidebar-backdrop'), rest: byId('main-column'),
});
new ConversationSearch({ input: byId('conversation-search'), results: byId('search-results'), list: byId('conversation-list') }, {
  titleOf: id => sidebar.titleOf(id),
  choose: ({ conversationId: id, messageId }) => { drawer.close({ refocus: false }); openConversation(id, { messageId }); },
});
new ConversationTransfer({
  exportLink: byId('export-all'), importButton: byId('import-open'), file: byId('import-file'), status: byId('transfer-status'),
}, { onImported: conversations => { sidebar.seeImported(conversations); return sidebar.refresh(); } });
new UsageMenu({
  button: byId('usage-open'), popover: byId('usage-popover'), month: byId('usage-month'), total: byId('usage-total'),
  split: byId('usage-split'), replies: byId('usage-replies'), status: byId('usage-status'),
});
const poller = new Poller(pollAll, pollInterval(location.search, root.dataset.pollMs));
const login = new Login(
  { app: byId('app'), panel: byId('login'), form: byId('login-form'), token: byId('token'), error: byId('login-error') },
  { onShow: () => { chat.stop(); poller.stop(); }, onLoggedIn: start, markReady },
);

function submitInput() {
  if (chat.busy || !chatReady || !server.configured || composer.tooLong) return;  // the counter says why
  chat.submit(composer.text);
}

/** The paging state of conversation `id`, asking the server for its messages only. */
function historyOf(id) {
  const history = new MessageHistory({
    fetchPage: (query = {}) => getHistory({ ...query, conversationId: id }),
    onChange: () => { if (history === messageHistory) thread.updateEdge(history); },
  });
  return history;
}

function loadOlder() {
  const history = messageHistory;
  return history.loadOlder(messages => { if (history === messageHistory) thread.prepend(messages); });
}

/**
 * The newest page, scrolled to its end, then older pages until they fill the screen. With `messageId` (a
 * search result): the page ending at that message and every newer one, scrolled to it, marked for a moment.
 * Returns false when another conversation was opened meanwhile.
 */
async function loadConversation(messageId = null) {
  const history = messageHistory;
  const current = () => history === messageHistory;
  const messages = await (messageId === null ? history.loadNewest() : history.loadEndingAt(messageId));
  if (!current()) return false;
  thread.replace(messages);
  chat.followStreaming(messages);  // replies still being written: the text so far at once, then live
  if (messageId !== null) {
    for await (const fresh of history.newerPages()) {
      if (!current()) return false;
      chat.followStreaming(thread.append(fresh));
    }
  }
  thread.updateEdge(history);
  const found = messageId === null ? null : byId('message-list').querySelector(`article[data-id="${messageId}"]`);
  if (found) {
    found.scrollIntoView({ block: 'center' });
    found.classList.add('found');
    setTimeout(() => found.classList.remove('found'), FOUND_HIGHLIGHT_MS);
  } else thread.scrollToBottom();
  chat.offerRetryOf(thread.failedTurn());  // a turn that failed before this load can still be retried
  while (current() && history.canLoadOlder && thread.underfilled()) await loadOlder();
  return current();
}

/** Show `text` above the messages for a few seconds (e.g. the conversation asked for is gone). */
function showNotice(text) {
  const notice = byId('conversation-notice');
  notice.textContent = text;
  notice.hidden = false;
  clearTimeout(showNotice.timer);
  showNotice.timer = setTimeout(() => { notice.hidden = true; }, NOTICE_MS);
}

/** The open conversation's title in the header and the window's title. */
function showTitle() {
  const title = sidebar.titleOf(conversationId);
  byId('conversation-heading').textContent = title;
  document.title = `${title} · ${t('title')}`;
}

/**
 * Open conversation `id` (at `messageId`): the address names it (`how`: 'push' a history entry, 'replace' it,
 * or 'none' for back/forward), the thread shows it, every call from now on carries it.
 */
async function openConversation(id, { messageId = null, how = 'push' } = {}) {
  if (how === 'push' && id === conversationId && messageId === null && chatReady) return;  // already open
  const search = searchFor(id, messageId, location.search);
  if (how === 'push' && search !== location.search) window.history.pushState({ c: id }, '', search || location.pathname);
  else if (how === 'replace') window.history.replaceState({ c: id }, '', search || location.pathname);
  conversationId = id;
  const history = historyOf(id);
  messageHistory = history;
  chat.switchTo(history);
  chatReady = false;
  markReady(false);
  thread.clear();
  thread.updateEdge(messageHistory);
  sidebar.setOpen(id);
  showTitle();
  let loaded;
  try {
    loaded = await loadConversation(messageId);
  } catch (error) {
    if (error.code === 'conversation_not_found' && id !== MAIN_ID) {
      return history === messageHistory ? fallBackToMain() : undefined;  // a late answer for one already left
    }
    if (error.status !== 401) thread.showEdgeError(errorText(error.code));
    loaded = history === messageHistory;
  }
  if (!loaded || id !== conversationId) return;
  chatReady = true;
  markReady(true);
  poller.soon();
}

/** The conversation open (or named by the address) does not exist: say so and open main. */
function fallBackToMain() {
  showNotice(t('conversationGone'));
  sidebar.refresh().catch(() => {});
  return openConversation(MAIN_ID, { how: 'replace' });
}

/** Polling: new messages of the open conversation, and the list (titles, times, reminders' dots). */
async function pollAll() {
  const polled = conversationId;
  const results = await Promise.allSettled([pollNewMessages(), login.shown ? null : sidebar.refresh()]);
  const gone = results[0].status === 'rejected' && results[0].reason?.code === 'conversation_not_found';
  // Deleted in another tab; unless the user has opened another meanwhile, which the answer is not about.
  if (gone && polled !== MAIN_ID && polled === conversationId) await fallBackToMain();
}

/** Messages newer than the newest shown (reminders, other tabs): add them, notify about reminders. */
async function pollNewMessages() {
  if (chat.busy || login.shown || !chatReady) return;
  const history = messageHistory;
  for await (const fresh of history.newerPages()) {
    if (history !== messageHistory) return;  // another conversation was opened meanwhile
    const stick = thread.nearBottom();
    const shown = thread.append(chat.withoutOwnTurn(fresh));
    chat.noteNewMessages(shown);
    chat.followStreaming(shown);  // another tab's turn, a reminder being worded: they stream in here too
    if (stick && shown.length) thread.scrollToBottom();
    noteNewReminders(shown.filter(message => message.is_scheduled && !message.streaming));  // a streaming one once written
  }
}

/** Reminder messages just shown: notify, and read the schedule and the panel again. */
function noteNewReminders(messages) {
  if (!messages.length) return;
  reminders.notify(messages);
  reminders.refreshSchedule();
  reminderPanel.load();  // their last results, and the notes under them
}

/** Ask, confirm, then clear conversation `id`'s messages on the server, and on the page if it is open. */
async function clearConversation(id) {
  if ((chat.busy && id === conversationId) || !window.confirm(t('confirmClear', { title: sidebar.titleOf(id) }))) return;
  await clearHistory({ conversationId: id });
  if (id === conversationId) {
    thread.clear();
    messageHistory.cleared();
  }
  sidebar.refresh().catch(() => {});
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

/**
 * Load what the chat shows: the list, then the conversation the address names (main when it names none, or
 * one that is gone); a 401 on the way shows the login form instead.
 */
async function start() {
  chatReady = false;
  await loadHealth();
  await sidebar.refresh().catch(() => {});
  const named = conversationFromSearch(location.search);
  const gone = named.malformed || (named.id !== MAIN_ID && sidebar.loaded && !sidebar.has(named.id));
  if (gone) showNotice(t('conversationGone'));
  await openConversation(gone ? MAIN_ID : named.id, { messageId: gone ? null : named.messageId, how: gone ? 'replace' : 'none' });
  markReady(true);
  if (login.shown) return;  // chatReady is openConversation's: set once the conversation open now is on screen
  pushBell.load();
  reminders.refreshSchedule();
  reminderPanel.load();
  poller.start();
}

authEvents.addEventListener('unauthorized', () => login.show());
document.addEventListener('keydown', event => { if (event.key === 'Escape') chat.stop(); });
document.addEventListener('visibilitychange', () => {
  if (document.hidden || login.shown) return;
  chat.retryNow();  // a phone waking up: reconnect a dropped reply now, not after its pause
  poller.soon();
});
window.addEventListener('online', () => chat.retryNow());
window.addEventListener('offline', () => chat.dropConnections());  // a connection may hang dead instead of failing
window.addEventListener('focus', () => { if (!login.shown) poller.soon(); });
window.addEventListener('popstate', () => {  // back / forward: the conversation that address names
  const named = conversationFromSearch(location.search);
  if (named.id !== conversationId || named.messageId !== null) openConversation(named.id, { messageId: named.messageId, how: 'none' });
});
scroller.addEventListener('scroll', () => { if (thread.nearTop()) loadOlder().catch(() => {}); }, { passive: true });
scroller.addEventListener('toggle', noteReasoningToggle, true);  // toggle does not bubble: listen while capturing
byId('new-chat').addEventListener('click', () => sidebar.createNew());
logoutButton.addEventListener('click', () => login.logOut());

start();
composer.focus();
