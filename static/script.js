/* The chat page: history, streamed replies, reminders and login. Plain DOM, no framework.
 * Sections: i18n, api, render, messages, stream, history, polling + notifications, schedule,
 * auth, composer, boot. Libraries (marked, DOMPurify, hljs) are vendored globals. */
'use strict';

// ---- i18n ---------------------------------------------------------------------------------

const STRINGS = {
  'zh-CN': {
    title: 'AI 聊天助手',
    placeholder: '输入消息，Enter 发送，Shift+Enter 换行',
    send: '发送',
    stop: '停止',
    newChat: '新对话（清空记录）',
    confirmClear: '清空当前对话？记录会归档在服务器上。',
    logout: '退出登录',
    notifyEnable: '开启定时提醒通知',
    notifyDisable: '关闭定时提醒通知',
    notifyDenied: '浏览器已禁止通知，请在站点设置中允许。',
    notifyUnsupported: '此浏览器不支持通知。',
    notConfiguredTitle: '尚未配置 API_KEY',
    notConfiguredBody: '请在 .env 中设置 API_KEY，然后重启服务。聊天记录仍可查看。',
    empty: '有什么可以帮你的？',
    you: '你',
    assistant: '助手',
    reminder: '定时提醒',
    thinking: '思考中…',
    reasoning: '思考过程',
    stopped: '已停止',
    incomplete: '未完成',
    copy: '复制',
    copied: '已复制',
    copyMessage: '复制消息',
    retry: '重试',
    loadingOlder: '正在加载更早的消息…',
    historyStart: '— 对话开始 —',
    nextReminder: '下次提醒：{time}',
    remindersOff: '',
    tokenLabel: '访问令牌',
    login: '登录',
    loginFailed: '令牌不正确，请重试。',
    loginRequired: '请输入访问令牌。',
    errors: {
      network: '无法连接到服务器，请检查网络后重试。',
      not_configured: '聊天尚未配置：请在 .env 中设置 API_KEY 并重启服务。',
      upstream_rate_limited: '模型服务繁忙（请求过多），请稍后重试。',
      upstream_timeout: '模型服务响应超时，请重试。',
      upstream_unreachable: '无法连接到模型服务，请稍后重试。',
      upstream_auth_failed: '模型服务拒绝了 API_KEY，请检查配置。',
      upstream_incomplete: '回复在完成前中断了。',
      upstream_bad_response: '模型服务返回了无法识别的内容。',
      message_too_long: '消息太长了。',
      storage_unavailable: '服务器无法保存聊天记录。',
      rate_limited: '请求太频繁了，请稍后再试。',
      stream_ended: '连接在回复完成前断开了。',
      default: '出错了，请重试。',
    },
  },
  en: {
    title: 'AI Chat',
    placeholder: 'Message… Enter to send, Shift+Enter for a new line',
    send: 'Send',
    stop: 'Stop',
    newChat: 'New chat (clear history)',
    confirmClear: 'Clear this conversation? It stays archived on the server.',
    logout: 'Log out',
    notifyEnable: 'Turn on reminder notifications',
    notifyDisable: 'Turn off reminder notifications',
    notifyDenied: 'Notifications are blocked; allow them in the site settings.',
    notifyUnsupported: 'This browser does not support notifications.',
    notConfiguredTitle: 'API_KEY is not set',
    notConfiguredBody: 'Set API_KEY in .env and restart the server. History can still be read.',
    empty: 'How can I help?',
    you: 'You',
    assistant: 'Assistant',
    reminder: 'Reminder',
    thinking: 'Thinking…',
    reasoning: 'Reasoning',
    stopped: 'Stopped',
    incomplete: 'Incomplete',
    copy: 'Copy',
    copied: 'Copied',
    copyMessage: 'Copy message',
    retry: 'Retry',
    loadingOlder: 'Loading older messages…',
    historyStart: '— Start of conversation —',
    nextReminder: 'Next reminder: {time}',
    remindersOff: '',
    tokenLabel: 'Access token',
    login: 'Log in',
    loginFailed: 'Wrong token, please try again.',
    loginRequired: 'Enter the access token.',
    errors: {
      network: 'Cannot reach the server. Check the connection and retry.',
      not_configured: 'Chat is not configured: set API_KEY in .env and restart.',
      upstream_rate_limited: 'The model service is busy (too many requests). Try again shortly.',
      upstream_timeout: 'The model service timed out. Please retry.',
      upstream_unreachable: 'Cannot reach the model service. Try again shortly.',
      upstream_auth_failed: 'The model service rejected the API_KEY; check the configuration.',
      upstream_incomplete: 'The reply was cut off before it finished.',
      upstream_bad_response: 'The model service sent something unreadable.',
      message_too_long: 'The message is too long.',
      storage_unavailable: 'The server cannot save the history.',
      rate_limited: 'Too many requests; try again later.',
      stream_ended: 'The connection closed before the reply finished.',
      default: 'Something went wrong. Please retry.',
    },
  },
};

/** The UI language: English when the browser prefers English over Chinese, else Chinese. */
function pickLanguage() {
  for (const tag of navigator.languages || [navigator.language || '']) {
    const lower = tag.toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'zh-CN';
}

const LANG = pickLanguage();

/** The UI string `key` in the page's language, with {name} placeholders filled from `vars`. */
function t(key, vars = {}) {
  const text = STRINGS[LANG][key] ?? STRINGS['zh-CN'][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => vars[name] ?? '');
}

/** Fill every data-i18n* attribute of the static markup and set <html lang> and the title. */
function applyTranslations() {
  document.documentElement.lang = LANG;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const [data, attr] of [['i18nPlaceholder', 'placeholder'], ['i18nTitle', 'title'], ['i18nAriaLabel', 'aria-label']]) {
    for (const el of document.querySelectorAll(`[data-${data.replace(/[A-Z]/g, c => '-' + c.toLowerCase())}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
}

/** A user-facing sentence for an error code; the server's own sentence is kept as detail. */
function errorText(code) {
  const table = STRINGS[LANG].errors;
  return table[code] || table.default;
}

// ---- api ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, code, status, userMessage = null) {
    super(message);
    this.code = code;
    this.status = status;
    this.userMessage = userMessage;  // the user's message, when the server stored it before failing
  }
}

/** fetch() for same-origin JSON; a 401 sends the user to the login form. */
async function api(path, { method = 'GET', body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      credentials: 'same-origin',
      headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiError(errorText('network'), 'network', 0);
  }
  return response;
}

/** Parse an error response into an ApiError (and show the login form on 401). */
async function errorFrom(response) {
  const body = await response.json().catch(() => null);
  const code = (body && body.code) || `http_${response.status}`;
  if (response.status === 401 && code !== 'invalid_token') showLogin();
  return new ApiError((body && body.error) || `HTTP ${response.status}`, code, response.status,
    (body && body.user_message) || null);
}

/** GET/POST/DELETE returning the parsed JSON body, or throwing ApiError. */
async function apiJson(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

// ---- render -------------------------------------------------------------------------------

const el = {};  // elements looked up once at boot

/** A new element with a class list and optional text. */
function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Make DOMPurify open every link in a new tab without giving it our window. */
function configureSanitizer() {
  DOMPurify.addHook('afterSanitizeAttributes', node => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
  marked.setOptions({ gfm: true, breaks: true });
}

/** Markdown → sanitized HTML. Nothing the model writes can run script or style the page. */
function markdownToSafeHtml(text) {
  const html = marked.parse(text || '');
  return DOMPurify.sanitize(html, {
    FORBID_TAGS: ['style', 'form', 'iframe', 'object', 'embed'],
    FORBID_ATTR: ['style'],
  });
}

/** Render markdown into `container`, highlighting code and adding a copy button per block. */
function renderMarkdown(container, text) {
  container.innerHTML = markdownToSafeHtml(text);
  for (const code of container.querySelectorAll('pre > code')) {
    const pre = code.parentElement;
    const language = (code.className.match(/language-([\w+#-]+)/) || [])[1] || '';
    if (language && !hljs.getLanguage(language)) code.classList.add('nohighlight');
    hljs.highlightElement(code);
    const block = make('div', 'code-block');
    const header = make('div', 'code-header');
    header.append(make('span', 'code-language', language || 'text'), copyButton(() => code.textContent, t('copy')));
    pre.replaceWith(block);
    block.append(header, pre);
  }
}

/** Copy `text` to the clipboard, also on plain-http origins where navigator.clipboard is absent. */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch { /* fall back below */ }
  }
  const area = make('textarea', 'offscreen');
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand('copy');
  area.remove();
}

/** A small button that copies getText() and says so for a moment. */
function copyButton(getText, label) {
  const button = make('button', 'copy-button', label);
  button.type = 'button';
  button.addEventListener('click', async () => {
    await copyText(getText());
    button.textContent = t('copied');
    button.classList.add('done');
    setTimeout(() => { button.textContent = label; button.classList.remove('done'); }, 1500);
  });
  return button;
}

/** "14:05" today, "3月2日 14:05" / "Mar 2, 14:05" on other days. */
function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const today = new Date().toDateString() === date.toDateString();
  const options = today ? { hour: '2-digit', minute: '2-digit' }
    : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(LANG, options).format(date);
}

// ---- messages -----------------------------------------------------------------------------

/** Build the element for one message (stored or still streaming). */
function messageElement(message) {
  const article = make('article', `message ${message.role}`);
  const meta = make('div', 'meta');
  const body = make('div', message.role === 'user' ? 'bubble' : 'bubble markdown');
  const actions = make('div', 'message-actions');
  article.append(meta, body, actions);
  article.message = message;
  updateMessageElement(article, message);
  actions.append(copyButton(() => article.message.content || '', t('copy')));
  actions.lastChild.title = t('copyMessage');
  return article;
}

/** Refresh an element's metadata, reasoning and body from `message`. */
function updateMessageElement(article, message) {
  article.message = message;
  if (message.id) {
    article.dataset.id = message.id;
    knownIds.add(message.id);
  }
  article.classList.toggle('scheduled', Boolean(message.is_scheduled));
  article.classList.toggle('stopped', Boolean(message.stopped));
  article.classList.toggle('incomplete', Boolean(message.incomplete));
  renderMeta(article.querySelector('.meta'), message);
  const body = article.querySelector('.bubble');
  if (message.role === 'user') body.textContent = message.content;
  else {
    renderReasoning(article, message.reasoning || '', false);
    renderMarkdown(body, message.content);
  }
}

/** The line above a message: reminder badge, time, stopped/incomplete flags. */
function renderMeta(meta, message) {
  meta.replaceChildren();
  if (message.is_scheduled) meta.append(make('span', 'badge', t('reminder')));
  if (message.timestamp) {
    const time = make('time', '', formatTime(message.timestamp));
    time.dateTime = message.timestamp;
    time.title = new Date(message.timestamp).toLocaleString(LANG);
    meta.append(time);
  }
  if (message.stopped) meta.append(make('span', 'flag', t('stopped')));
  else if (message.incomplete) {
    const flag = make('span', 'flag', t('incomplete'));
    if (message.error) flag.title = message.error;
    meta.append(flag);
  }
}

/** The collapsible thinking block, created on first use; open while thinking is live. */
function renderReasoning(article, text, live) {
  let details = article.querySelector('details.reasoning');
  if (!text) {
    if (details) details.remove();
    return;
  }
  if (!details) {
    details = make('details', 'reasoning');
    details.append(make('summary'), make('div', 'reasoning-body'));
    article.querySelector('.meta').after(details);
  }
  details.querySelector('summary').textContent = live ? t('thinking') : t('reasoning');
  details.querySelector('.reasoning-body').textContent = text;
  details.classList.toggle('live', live);
}

/** Show or hide the "empty conversation" hint. */
function updateEmptyState() {
  el.empty.hidden = el.list.children.length > 0;
}

/** Add messages at the end (newer) or the start (older) of the list. */
function addMessages(messages, { prepend = false } = {}) {
  const fresh = messages.filter(m => !knownIds.has(m.id) && !adoptStoredReply(m));
  const nodes = fresh.map(messageElement);
  if (prepend) el.list.prepend(...nodes);
  else el.list.append(...nodes);
  updateEmptyState();
  return fresh;
}

/** A stored reply to a turn this page streamed (e.g. stopped): fill in the local element. */
function adoptStoredReply(message) {
  if (message.role !== 'assistant' || !message.reply_to) return false;
  const local = [...el.list.querySelectorAll('article.assistant:not([data-id])')]
    .find(node => node.dataset.replyTo === String(message.reply_to));
  if (!local) return false;
  updateMessageElement(local, message);
  return true;
}

/** Whether the list is scrolled (nearly) to the bottom, so new text should keep it there. */
function nearBottom() {
  const box = el.messages;
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  el.messages.scrollTop = el.messages.scrollHeight;
}

// ---- stream -------------------------------------------------------------------------------

let current = null;  // the turn being streamed: { controller, text, user, reply, ... }

/**
 * Send `text` as a new turn and stream the reply into the page. Retrying a turn whose message the
 * server already stored passes `retryOf` (its id) and that message's element, so it is not stored
 * or shown twice.
 */
async function sendMessage(text, { retryOf = null, userEl = null } = {}) {
  if (current || !text.trim()) return;
  const turn = {
    text,
    controller: new AbortController(),
    content: '',
    reasoning: '',
    started: false,
    frame: 0,
  };
  current = turn;
  turn.userEl = userEl || messageElement({ role: 'user', content: text });
  turn.replyEl = messageElement({ role: 'assistant', content: '' });
  turn.replyEl.classList.add('pending');
  if (userEl) el.list.append(turn.replyEl);
  else el.list.append(turn.userEl, turn.replyEl);
  updateEmptyState();
  scrollToBottom();
  setStreaming(true);
  try {
    const body = retryOf ? { message: text, retry_of: retryOf } : { message: text };
    const response = await api('/api/chat/stream', { method: 'POST', body, signal: turn.controller.signal });
    if (!response.ok) throw await errorFrom(response);
    await readEvents(response, event => handleEvent(turn, event));
    if (!turn.finished) throw new ApiError('', 'stream_ended', 0);
  } catch (error) {
    if (error.name === 'AbortError') finishStopped(turn);
    else failTurn(turn, error);
  } finally {
    current = null;
    setStreaming(false);
    pollSoon();
  }
}

/** Read a text/event-stream body, calling onEvent with each `data:` JSON object. */
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  const flush = () => {
    buffer = buffer.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split('\n').filter(line => line.startsWith('data:'))
        .map(line => line.slice(5).replace(/^ /, '')).join('\n');
      if (data) onEvent(JSON.parse(data));
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    flush();
  }
  buffer += decoder.decode() + '\n\n';
  flush();
}

/** Apply one server event to the turn. */
function handleEvent(turn, event) {
  if (event.type === 'start') {
    turn.started = true;
    turn.userMessage = event.user_message;
    updateMessageElement(turn.userEl, event.user_message);
    turn.replyEl.dataset.replyTo = event.user_message.id;
    if (el.input.value === turn.text) {  // the words are safe on the server now
      el.input.value = '';
      autoGrow();
    }
  } else if (event.type === 'reasoning') {
    turn.reasoning += event.content;
    scheduleRender(turn);
  } else if (event.type === 'delta') {
    turn.content += event.content;
    scheduleRender(turn);
  } else if (event.type === 'done') {
    turn.finished = true;
    cancelAnimationFrame(turn.frame);
    turn.replyEl.classList.remove('pending', 'streaming');
    updateMessageElement(turn.replyEl, event.message);
  } else if (event.type === 'error') {
    turn.finished = true;
    throw new ApiError(event.error || '', event.code || 'default', 200);
  }
}

/** Re-render the streaming reply at most once per animation frame. */
function scheduleRender(turn) {
  if (turn.frame) return;
  turn.frame = requestAnimationFrame(() => {
    turn.frame = 0;
    renderLive(turn);
  });
}

/** Draw the text received so far: thinking in its block, the answer as markdown. */
function renderLive(turn) {
  const stick = nearBottom();
  const article = turn.replyEl;
  article.classList.remove('pending');
  article.classList.add('streaming');
  renderReasoning(article, turn.reasoning, !turn.content);
  const details = article.querySelector('details.reasoning');
  if (details && !details.dataset.touched) {  // open while thinking, folded once the answer starts
    details.dataset.auto = String(!turn.content);
    details.open = !turn.content;
  }
  renderMarkdown(article.querySelector('.bubble'), turn.content);
  article.message = { ...article.message, content: turn.content };
  if (stick) scrollToBottom();
}

/** The user pressed Stop: keep what arrived, marked stopped (the server stores it the same way). */
function finishStopped(turn) {
  cancelAnimationFrame(turn.frame);
  turn.replyEl.classList.remove('pending', 'streaming');
  const partial = { ...turn.replyEl.message, role: 'assistant', content: turn.content, reasoning: turn.reasoning,
    stopped: true, timestamp: new Date().toISOString() };
  if (!turn.started) {  // stopped before the server took the message: as if never sent
    turn.userEl.remove();
    turn.replyEl.remove();
    updateEmptyState();
    if (el.input.value === '') el.input.value = turn.text;
    return;
  }
  updateMessageElement(turn.replyEl, partial);
}

/** The turn failed: show the partial reply (if any), the error and a Retry button; give the text back. */
function failTurn(turn, error) {
  cancelAnimationFrame(turn.frame);
  if (error.userMessage) {  // refused after the server stored the words: show them as stored
    turn.userMessage = error.userMessage;
    updateMessageElement(turn.userEl, error.userMessage);
  }
  const article = turn.replyEl;
  article.classList.remove('pending', 'streaming');
  if (turn.content || turn.reasoning) {
    updateMessageElement(article, { ...article.message, content: turn.content, reasoning: turn.reasoning,
      incomplete: true, error: error.message, timestamp: new Date().toISOString() });
  } else {
    article.querySelector('.bubble').replaceChildren();
    article.classList.add('failed');
  }
  if (error.code === 'unauthorized') return;
  if (el.input.value.trim() === '') {
    el.input.value = turn.text;
    autoGrow();
  }
  const box = make('div', 'turn-error');
  box.setAttribute('role', 'alert');
  box.append(make('p', 'turn-error-text', errorText(error.code)));
  if (error.message && error.message !== errorText(error.code)) box.append(make('p', 'turn-error-detail', error.message));
  const retry = make('button', 'retry-button', t('retry'));
  retry.type = 'button';
  retry.addEventListener('click', () => retryTurn(turn, box));
  box.append(retry);
  article.querySelector('.bubble').after(box);
  scrollToBottom();
}

/** Send the failed turn's words again: as a retry of the stored message, or anew if none was stored. */
function retryTurn(turn, box) {
  if (current) return;
  box.remove();
  if (turn.replyEl.classList.contains('failed')) turn.replyEl.remove();
  if (turn.userMessage) {
    sendMessage(turn.text, { retryOf: turn.userMessage.id, userEl: turn.userEl });
  } else {
    turn.userEl.remove();
    sendMessage(turn.text);
  }
}

/** Stop button or Escape: abort the fetch; the server keeps the partial reply marked stopped. */
function stopStreaming() {
  if (current) current.controller.abort();
}

/** Swap Send for Stop while a reply streams. */
function setStreaming(on) {
  el.send.hidden = on;
  el.stop.hidden = !on;
  if (!on) updateSendState();
}

// ---- history ------------------------------------------------------------------------------

const knownIds = new Set();
const historyState = { oldestId: null, hasMore: false, loading: null };  // loading: the request in flight

/** The newest id the page shows (the poll asks for anything after it). */
function newestId() {
  let newest = 0;
  for (const id of knownIds) newest = Math.max(newest, id);
  return newest;
}

/** Load the newest page of the conversation and scroll to its end. */
async function loadHistory() {
  const data = await apiJson('/api/history');
  el.list.replaceChildren();
  knownIds.clear();
  addMessages(data.messages);
  historyState.oldestId = data.messages.length ? data.messages[0].id : null;
  historyState.hasMore = data.has_more;
  updateHistoryEdge();
  scrollToBottom();
  await fillViewport();
}

/** Load the page before the oldest shown message, keeping what the user looks at in place. */
function loadOlder() {
  if (!historyState.loading && historyState.hasMore && historyState.oldestId !== null) {
    historyState.loading = fetchOlder();
    updateHistoryEdge();
  }
  return historyState.loading || Promise.resolve();
}

async function fetchOlder() {
  try {
    const data = await apiJson(`/api/history?before=${historyState.oldestId}`);
    const box = el.messages;
    const fromBottom = box.scrollHeight - box.scrollTop;
    addMessages(data.messages, { prepend: true });
    if (data.messages.length) historyState.oldestId = data.messages[0].id;
    historyState.hasMore = data.has_more && data.messages.length > 0;
    box.scrollTop = box.scrollHeight - fromBottom;
  } finally {
    historyState.loading = null;
    updateHistoryEdge();
  }
}

/** Keep loading older pages while they do not fill the screen (no scrollbar to scroll up with). */
async function fillViewport() {
  while (historyState.hasMore && el.messages.scrollHeight <= el.messages.clientHeight + 10) {
    await loadOlder();
  }
}

/** The note at the top: loading, start of conversation, or nothing. */
function updateHistoryEdge() {
  const edge = el.historyEdge;
  if (historyState.loading) edge.textContent = t('loadingOlder');
  else if (!historyState.hasMore && el.list.children.length) edge.textContent = t('historyStart');
  else edge.textContent = '';
  edge.hidden = !edge.textContent;
}

/** A thinking block the user opened or closed by hand stays that way while the reply streams. */
function onReasoningToggle(event) {
  const details = event.target;
  if (details.matches('details.reasoning') && String(details.open) !== details.dataset.auto) details.dataset.touched = '1';
}

function onMessagesScroll() {
  if (el.messages.scrollTop < 120) loadOlder().catch(() => {});
}

/** Ask, confirm, then clear the conversation on the server and on the page. */
async function clearConversation() {
  if (current || !window.confirm(t('confirmClear'))) return;
  await apiJson('/api/history', { method: 'DELETE' });
  el.list.replaceChildren();
  historyState.hasMore = false;
  historyState.oldestId = null;
  updateHistoryEdge();
  updateEmptyState();
}

// ---- polling + notifications ------------------------------------------------------------------

const poll = { ms: 5000, timer: 0 };

/** Poll interval: ?poll=<ms> in the address, else data-poll-ms on <html>, else 5 s. */
function pollInterval() {
  const fromQuery = Number(new URLSearchParams(location.search).get('poll'));
  const fromMarkup = Number(document.documentElement.dataset.pollMs);
  return fromQuery > 0 ? fromQuery : fromMarkup > 0 ? fromMarkup : 5000;
}

/** Fetch messages newer than the newest shown (reminders, other tabs) and append them. */
async function pollNewMessages() {
  if (current || !el.login.hidden) return;
  let more = true;
  while (more) {
    const data = await apiJson(`/api/history?after=${newestId()}`);
    const stick = nearBottom();
    const fresh = addMessages(data.messages);
    if (stick && fresh.length) scrollToBottom();
    if (fresh.some(m => m.is_scheduled)) {
      notifyReminders(fresh.filter(m => m.is_scheduled));
      loadSchedule();
    }
    for (const m of data.messages) knownIds.add(m.id);
    more = data.has_more && data.messages.length > 0;
  }
}

function schedulePoll(delay = poll.ms) {
  clearTimeout(poll.timer);
  poll.timer = setTimeout(async () => {
    try {
      await pollNewMessages();
    } catch { /* next round */ }
    schedulePoll();
  }, delay);
}

function pollSoon() {
  schedulePoll(300);
}

const NOTIFY_KEY = 'chat.notifyReminders';

function notificationsOn() {
  return 'Notification' in window && Notification.permission === 'granted' && localStorage.getItem(NOTIFY_KEY) === '1';
}

/** The bell: asks for permission on this click only, then toggles reminder notifications. */
async function toggleNotifications() {
  if (!('Notification' in window)) {
    window.alert(t('notifyUnsupported'));
    return;
  }
  if (notificationsOn()) {
    localStorage.setItem(NOTIFY_KEY, '0');
  } else {
    const permission = Notification.permission === 'default' ? await Notification.requestPermission() : Notification.permission;
    if (permission !== 'granted') {
      window.alert(t('notifyDenied'));
      return;
    }
    localStorage.setItem(NOTIFY_KEY, '1');
  }
  updateBell();
}

function updateBell() {
  const on = notificationsOn();
  el.bell.setAttribute('aria-pressed', String(on));
  el.bell.title = t(on ? 'notifyDisable' : 'notifyEnable');
  el.bell.setAttribute('aria-label', el.bell.title);
}

/** A desktop notification per new reminder, when the user turned them on and looks elsewhere. */
function notifyReminders(messages) {
  if (!notificationsOn() || document.hasFocus()) return;
  for (const message of messages) {
    const text = message.content.replace(/[#*`>_[\]()]/g, '').slice(0, 180);
    try {
      new Notification(t('reminder'), { body: text, tag: `reminder-${message.id}` });
    } catch { /* e.g. Android Chrome allows notifications only from a service worker */ }
  }
}

// ---- schedule -----------------------------------------------------------------------------

/** Show the next reminder time under the title (nothing when reminders are off). */
async function loadSchedule() {
  try {
    const data = await apiJson('/api/schedule');
    const next = data.enabled && data.next_run_time ? formatTime(data.next_run_time) : '';
    el.scheduleInfo.textContent = next ? t('nextReminder', { time: next }) : '';
    el.scheduleInfo.hidden = !next;
    if (next) el.scheduleInfo.title = `${data.cron || ''} (${data.timezone || ''})`;
  } catch {
    el.scheduleInfo.hidden = true;
  }
}

// ---- auth ---------------------------------------------------------------------------------

const health = { configured: true, authRequired: false };

/** Show the login form instead of the chat. */
function showLogin() {
  if (current) current.controller.abort();
  clearTimeout(poll.timer);
  el.app.hidden = true;
  el.login.hidden = false;
  el.token.focus();
}

/** Send the token; the server answers with an HttpOnly cookie. */
async function logIn(event) {
  event.preventDefault();
  delete document.documentElement.dataset.ready;
  const token = el.token.value.trim();
  el.loginError.hidden = true;
  if (!token) {
    el.loginError.textContent = t('loginRequired');
    el.loginError.hidden = false;
    document.documentElement.dataset.ready = '1';
    return;
  }
  try {
    await apiJson('/api/login', { method: 'POST', body: { token } });
  } catch (error) {
    el.loginError.textContent = error.status === 401 ? t('loginFailed') : errorText(error.code);
    el.loginError.hidden = false;
    document.documentElement.dataset.ready = '1';
    return;
  }
  el.token.value = '';
  el.login.hidden = true;
  el.app.hidden = false;
  await start();
}

async function logOut() {
  await api('/api/logout', { method: 'POST' }).catch(() => {});
  showLogin();
}

/** What the server says about itself: is chat configured, is a login needed. */
async function loadHealth() {
  try {
    const data = await apiJson('/api/health');
    health.configured = data.chat_configured !== false;
    health.authRequired = data.auth_required === true;
  } catch { /* the history request will tell */ }
  el.banner.hidden = health.configured;
  el.logout.hidden = !health.authRequired;
  updateSendState();
}

// ---- composer -----------------------------------------------------------------------------

/** Grow the textarea with its text, up to a limit after which it scrolls. */
function autoGrow() {
  const input = el.input;
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 220)}px`;
}

function updateSendState() {
  el.send.disabled = !health.configured || !el.input.value.trim();
}

/** Enter sends; Shift+Enter is a new line; Enter that ends an IME composition never sends. */
function onInputKeydown(event) {
  if (event.key !== 'Enter' || event.shiftKey || event.altKey) return;
  if (event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  submitInput();
}

function submitInput() {
  if (current || !chatReady || !health.configured) return;
  const text = el.input.value;
  if (text.trim()) sendMessage(text);
}

// ---- boot ---------------------------------------------------------------------------------

let chatReady = false;  // no sending until the history is on screen, so loading it cannot wipe a new turn

/** Load what the chat shows; a 401 on the way shows the login form instead.
 * <html data-ready> marks the end of this first load (tests wait for it). */
async function start() {
  chatReady = false;
  await loadHealth();
  try {
    await loadHistory();
  } catch (error) {
    if (error.status !== 401) {
      el.historyEdge.textContent = errorText(error.code);
      el.historyEdge.hidden = false;
    }
  }
  document.documentElement.dataset.ready = '1';
  if (!el.login.hidden) return;
  chatReady = true;
  loadSchedule();
  schedulePoll();
}

function boot() {
  Object.assign(el, {
    app: document.getElementById('app'),
    messages: document.getElementById('messages'),
    list: document.getElementById('message-list'),
    empty: document.getElementById('empty'),
    historyEdge: document.getElementById('history-edge'),
    banner: document.getElementById('config-banner'),
    scheduleInfo: document.getElementById('schedule-info'),
    composer: document.getElementById('composer'),
    input: document.getElementById('input'),
    send: document.getElementById('send'),
    stop: document.getElementById('stop'),
    bell: document.getElementById('notify-toggle'),
    newChat: document.getElementById('new-chat'),
    logout: document.getElementById('logout'),
    login: document.getElementById('login'),
    loginForm: document.getElementById('login-form'),
    token: document.getElementById('token'),
    loginError: document.getElementById('login-error'),
  });
  applyTranslations();
  configureSanitizer();
  poll.ms = pollInterval();

  el.composer.addEventListener('submit', event => { event.preventDefault(); submitInput(); });
  el.input.addEventListener('keydown', onInputKeydown);
  el.input.addEventListener('input', () => { autoGrow(); updateSendState(); });
  el.stop.addEventListener('click', stopStreaming);
  document.addEventListener('keydown', event => { if (event.key === 'Escape') stopStreaming(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && el.login.hidden) pollSoon(); });
  el.messages.addEventListener('scroll', onMessagesScroll, { passive: true });
  el.messages.addEventListener('toggle', onReasoningToggle, true);
  el.bell.addEventListener('click', toggleNotifications);
  el.newChat.addEventListener('click', () => clearConversation().catch(() => {}));
  el.logout.addEventListener('click', logOut);
  el.loginForm.addEventListener('submit', logIn);
  updateBell();
  updateSendState();
  start();
  el.input.focus();
}

document.addEventListener('DOMContentLoaded', boot);
