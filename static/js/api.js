/** The server's HTTP API: same-origin fetch, typed errors, one function per endpoint. Knows nothing of the page. */

/**
 * A failed call. `code` is the server's machine code (or `network`, `http_<status>`, `stream_ended`),
 * `message` its own sentence (the page shows a translated one and keeps this as detail), `userMessage`
 * the user's message when the server stored it before failing (Retry answers it with `retry_of`),
 * `retryAfter` the seconds from a Retry-After header.
 */
export class ApiError extends Error {
  constructor(message, { code = 'default', status = 0, userMessage = null, retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.userMessage = userMessage;
    this.retryAfter = retryAfter;
  }
}

/**
 * Announces `unauthorized` when a call needs a login (a 401 other than a wrong token at the login
 * form itself). The page listens and shows its login form; this module never touches the UI.
 */
export const authEvents = new EventTarget();

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (value === null || value === undefined || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - now) / 1000));
}

/**
 * fetch() for a same-origin path with an optional JSON body; a network failure becomes ApiError `network`.
 * Every POST says it is JSON, even without a body: the server refuses any other POST, as it must a form's.
 */
export async function request(path, { method = 'GET', body, signal, headers = {} } = {}) {
  const json = body !== undefined || method === 'POST';
  try {
    return await fetch(path, {
      method,
      signal,
      credentials: 'same-origin',
      headers: json ? { ...headers, 'Content-Type': 'application/json' } : headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error?.name === 'AbortError') throw error;  // the caller stopped it: not a failure
    throw new ApiError('', { code: 'network', status: 0, cause: error });
  }
}

/** The ApiError for a non-2xx response, announcing `unauthorized` on a 401. */
export async function errorFrom(response) {
  const body = await response.json().catch(() => null);
  const code = body?.code || `http_${response.status}`;
  if (response.status === 401 && code !== 'invalid_token') authEvents.dispatchEvent(new Event('unauthorized'));
  return new ApiError(body?.error || `HTTP ${response.status}`, {
    code,
    status: response.status,
    userMessage: body?.user_message ?? null,
    retryAfter: parseRetryAfter(response.headers.get('Retry-After')),
  });
}

/** A call answering JSON: the parsed body, or a thrown ApiError. */
export async function requestJson(path, options) {
  const response = await request(path, options);
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

// ---- endpoints (new features add theirs here: reminders, push channels, conversations) ----

/** Whether chat is configured and a login is needed. */
export const getHealth = () => requestJson('/api/health');

/** `path?name=value&…` with only the values given (undefined and null are left out). */
function withQuery(path, values) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null) query.set(name, String(value));
  }
  const search = query.toString();
  return search ? `${path}?${search}` : path;
}

/**
 * A page of messages of conversation `conversationId` (none: the main one), oldest first: the newest by
 * default, or those `before` / `after` an id.
 */
export const getHistory = ({ before, after, limit, conversationId } = {}) =>
  requestJson(withQuery('/api/history', { conversation_id: conversationId, before, after, limit }));

/** Clear a conversation's messages (the server archives them). */
export const clearHistory = ({ conversationId } = {}) =>
  requestJson(withQuery('/api/history', { conversation_id: conversationId }), { method: 'DELETE' });

/** Every conversation's meta (`id`, `title`, `updated_at`, `pinned`, `reminder_at`, …), pinned then newest first. */
export const listConversations = () => requestJson('/api/conversations');

/** A new conversation (`{title?}`); answers `{conversation}`. */
export const createConversation = (fields = {}) => requestJson('/api/conversations', { method: 'POST', body: fields });

/** Rename or pin a conversation (`{title?, pinned?}`); answers `{conversation}`. */
export const changeConversation = (id, changes) =>
  requestJson(`/api/conversations/${encodeURIComponent(id)}`, { method: 'PATCH', body: changes });

/** Delete a conversation (the server archives it; main cannot be deleted). */
export const deleteConversation = id =>
  requestJson(`/api/conversations/${encodeURIComponent(id)}`, { method: 'DELETE' });

/** Where a conversation downloads as `markdown` or `json` (a link: the browser saves the file). */
export const conversationExportUrl = (id, format) =>
  withQuery(`/api/conversations/${encodeURIComponent(id)}/export`, { format });

/** Where every conversation downloads as a ChatGPT-compatible conversations.json. */
export const EXPORT_ALL_URL = '/api/export';

/** Messages matching `q` in every conversation, newest first: `{results: [{conversation_id, message_id, snippet, …}]}`. */
export const searchMessages = (q, { limit, signal } = {}) => requestJson(withQuery('/api/search', { q, limit }), { signal });

/**
 * Upload a conversations.json (ours or ChatGPT's) as multipart field `file`: `{imported, skipped, conversations}`.
 * Not JSON, so fetch sets the multipart Content-Type with its boundary itself.
 */
export async function importConversations(file) {
  const form = new FormData();
  form.append('file', file, file.name || 'conversations.json');
  let response;
  try {
    response = await fetch('/api/import', { method: 'POST', credentials: 'same-origin', body: form });
  } catch (error) {
    throw new ApiError('', { code: 'network', status: 0, cause: error });
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** The reminder schedule and its next run. */
export const getSchedule = () => requestJson('/api/schedule');

/** Every reminder, the read-only .env one first. */
export const listReminders = () => requestJson('/api/reminders');

/** Create a reminder from `{text, at | cron, mode, timezone}`; a refusal is ApiError 400 with the server's sentence. */
export const createReminder = fields => requestJson('/api/reminders', { method: 'POST', body: fields });

/** Change some of a reminder's fields (`{enabled: false}` pauses it). */
export const changeReminder = (id, changes) =>
  requestJson(`/api/reminders/${encodeURIComponent(id)}`, { method: 'PATCH', body: changes });

export const deleteReminder = id => requestJson(`/api/reminders/${encodeURIComponent(id)}`, { method: 'DELETE' });

/** Send a reminder now, once; answers the reminder and the stored message. */
export const runReminder = id => requestJson(`/api/reminders/${encodeURIComponent(id)}/run`, { method: 'POST' });

/** The next three fire times of `{at}` or `{cron}` (and `timezone`), checked as a create would; nothing is saved. */
export function previewSchedule({ at, cron, timezone }, { signal } = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries({ at, cron, timezone })) if (value) query.set(name, value);
  return requestJson(`/api/schedule/preview?${query}`, { signal });
}

/** The body of a call about message `messageId`, naming its conversation when given (else the reminder's own). */
const aboutMessage = (messageId, conversationId, extra = {}) =>
  (conversationId ? { message_id: messageId, ...extra, conversation_id: conversationId } : { message_id: messageId, ...extra });

/**
 * Remind again of reminder message `messageId` (in conversation `conversationId`), once, `minutes` from now
 * (a new one-off reminder).
 */
export const snoozeReminder = (id, messageId, minutes = 10, { conversationId } = {}) => requestJson(
  `/api/reminders/${encodeURIComponent(id)}/snooze`,
  { method: 'POST', body: aboutMessage(messageId, conversationId, { minutes }) },
);

/** Mark reminder message `messageId` (in conversation `conversationId`) done; answers the stored message with `done_at`. */
export const markReminderDone = (id, messageId, { conversationId } = {}) => requestJson(
  `/api/reminders/${encodeURIComponent(id)}/done`, { method: 'POST', body: aboutMessage(messageId, conversationId) },
);

/** Every push channel (NOTIFY_URLS ones first, browsers last), each URL masked by the server. */
export const listChannels = () => requestJson('/api/channels');

/** Add a channel `{name, url}`; a URL Apprise cannot use is ApiError 400 `invalid_channel_url` with a sentence. */
export const createChannel = fields => requestJson('/api/channels', { method: 'POST', body: fields });

/** Rename a channel or replace its URL (`{name?, url?}`). */
export const changeChannel = (id, changes) =>
  requestJson(`/api/channels/${encodeURIComponent(id)}`, { method: 'PATCH', body: changes });

export const deleteChannel = id => requestJson(`/api/channels/${encodeURIComponent(id)}`, { method: 'DELETE' });

/** Send a test message to a channel now: `{delivered, answer}` (what the service said). */
export const testChannel = id => requestJson(`/api/channels/${encodeURIComponent(id)}/test`, { method: 'POST' });

/** Any call of this API by method and path (an Undo request built elsewhere). */
export const callApi = ({ method, path, body }) => requestJson(path, { method, body });

/** Exchange the access token for the login cookie; a wrong token is ApiError 401 `invalid_token`. */
export const logIn = token => requestJson('/api/login', { method: 'POST', body: { token } });

/** Drop the login cookie; failures do not matter, the page shows the login form anyway. */
export const logOut = () => request('/api/logout', { method: 'POST' }).catch(() => null);

/**
 * Start a streamed turn in conversation `conversationId` (none: main) and return its text/event-stream
 * body (bytes). `retryOf` answers an already stored user message again instead of storing `message` twice;
 * so does sending it again with its `idempotencyKey`, which also joins the turn already under way for it.
 */
export async function openChatStream({ message, retryOf = null, conversationId = null, idempotencyKey = null, signal }) {
  const body = retryOf ? { message, retry_of: retryOf } : { message };
  if (conversationId) body.conversation_id = conversationId;
  if (idempotencyKey) body.idempotency_key = idempotencyKey;
  const response = await request('/api/chat/stream', { method: 'POST', body, signal });
  if (!response.ok) throw await errorFrom(response);
  return response.body;
}

/**
 * Follow reply `messageId` (in conversation `conversationId`, none: main) from after event `after`: the
 * text/event-stream body replaying the events after it, then live ones until the reply's terminal event.
 * A reply the server does not know is ApiError 404 `message_not_found`.
 */
export async function resumeChatStream({ messageId, conversationId = null, after = 0, signal }) {
  const path = withQuery(`/api/chat/stream/${encodeURIComponent(messageId)}`, { conversation_id: conversationId, after });
  const response = await request(path, { signal, headers: { 'Last-Event-ID': String(after) } });
  if (!response.ok) throw await errorFrom(response);
  return response.body;
}

/** Stop reply `messageId` on the server: answers `{ message }`, the reply as stored (marked stopped if it was cut). */
export const stopChatStream = (messageId, { conversationId = null } = {}) => requestJson(
  `/api/chat/stream/${encodeURIComponent(messageId)}/stop`,
  { method: 'POST', body: conversationId ? { conversation_id: conversationId } : {} },
);
