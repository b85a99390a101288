/**
 * The conversations' logic that needs no browser: which one the address names, the sidebar's order, the
 * unread badge, short relative times, and the pieces of a search snippet to highlight.
 */

export const MAIN_ID = 'main';
const ID_PATTERN = /^(main|[0-9a-f]{12})$/;

/** Whether `id` has the form of a conversation id (main, or 12 lowercase hex characters). */
export function isConversationId(id) {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

/**
 * What the address names: `{ id, messageId, malformed }`. No `c` is the main conversation; a `c` that is
 * no id at all is main too, `malformed` so the page can say so. `m` is the message to show, or null.
 */
export function conversationFromSearch(search) {
  const query = new URLSearchParams(search);
  const named = query.get('c');
  const malformed = named !== null && named !== '' && !isConversationId(named);
  const id = named && !malformed ? named : MAIN_ID;
  const m = query.get('m');
  const messageId = m !== null && /^\d+$/.test(m) ? Number(m) : null;
  return { id, messageId, malformed };
}

/**
 * The query string for conversation `id` (and message `messageId`), keeping the other parameters of
 * `search` (e.g. ?poll=); main has no `c`. Returns '' or '?…'.
 */
export function searchFor(id, messageId = null, search = '') {
  const query = new URLSearchParams(search);
  query.delete('c');
  query.delete('m');
  if (id && id !== MAIN_ID) query.set('c', id);
  if (messageId !== null && messageId !== undefined) query.set('m', String(messageId));
  const text = query.toString();
  return text ? `?${text}` : '';
}

/** Milliseconds of an ISO timestamp, or -Infinity when missing or unreadable (sorts last, never "newer"). */
export function timeOf(iso) {
  const ms = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(ms) ? -Infinity : ms;
}

/** The sidebar's order: pinned first, then the newest `updated_at` first (offsets compared as instants). */
export function sortConversations(conversations) {
  return [...conversations].sort((a, b) => (
    Number(Boolean(b.pinned)) - Number(Boolean(a.pinned))
    || timeOf(b.updated_at) - timeOf(a.updated_at)
    || String(a.id).localeCompare(String(b.id))
  ));
}

/** The title to show: its own, or the localized fallback (main and untitled ones differ). */
export function displayTitle(conversation, t) {
  const title = (conversation?.title ?? '').trim();
  if (title) return title;
  return t(conversation?.id === MAIN_ID ? 'mainConversation' : 'untitledConversation');
}

/**
 * Whether conversation `meta` shows the unread dot: a reminder arrived (`reminder_at`) after the newest one
 * seen there (`seen[id]`, an ISO timestamp the page stored), and it is not the one open.
 * Server times are compared with server times, so a wrong clock in the browser cannot hide a badge.
 */
export function hasUnread(meta, seen, openId) {
  if (!meta?.reminder_at || meta.id === openId) return false;
  const seenAt = seen?.[meta.id];
  return seenAt === undefined || timeOf(meta.reminder_at) > timeOf(seenAt);
}

/**
 * `seen` after looking at `conversations` with `openId` open: the open one's newest reminder is seen.
 * `baseline` (no record yet in this browser): every reminder so far counts as seen, so a first visit is not all dots.
 */
export function markSeen(seen, conversations, openId, { baseline = false } = {}) {
  const next = { ...seen };
  for (const meta of conversations) {
    if (!meta.reminder_at) continue;
    if (baseline || meta.id === openId) {
      if (next[meta.id] === undefined || timeOf(meta.reminder_at) > timeOf(next[meta.id])) next[meta.id] = meta.reminder_at;
    }
  }
  for (const id of Object.keys(next)) {  // forget deleted ones
    if (!conversations.some(meta => meta.id === id)) delete next[id];
  }
  return next;
}

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/**
 * A short time for the sidebar: just now, minutes, hours, yesterday, days (within a week), then a date
 * (with the year when not this year). `now` is a Date; `t` gives the words, `lang` the date format.
 */
export function relativeTime(iso, now, t, lang) {
  const ms = timeOf(iso);
  if (ms === -Infinity) return '';
  const ago = now.getTime() - ms;
  if (ago < MINUTE) return t('timeJustNow');  // also a time slightly in the future (clocks differ)
  if (ago < HOUR) return t('timeMinutes', { n: Math.floor(ago / MINUTE) });
  const date = new Date(ms);
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  if (ms >= startOfToday) return t('timeHours', { n: Math.floor(ago / HOUR) });
  if (ms >= startOfToday - DAY) return t('timeYesterday');
  const days = Math.ceil((startOfToday - ms) / DAY);
  if (days < 7) return t('timeDays', { n: days });
  const options = date.getFullYear() === now.getFullYear()
    ? { month: 'short', day: 'numeric' } : { year: 'numeric', month: 'numeric', day: 'numeric' };
  return new Intl.DateTimeFormat(lang, options).format(date);
}

/** The words of a search query (split on white space), without duplicates, longest first. */
export function searchTerms(query) {
  const words = String(query ?? '').trim().split(/\s+/u).filter(Boolean);
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

/**
 * `text` cut into `[{ text, hit }]` pieces, `hit` where a term occurs (any case). The caller builds text
 * nodes and <mark>s from them, so nothing from the server is ever parsed as HTML.
 */
export function highlightPieces(text, terms) {
  const source = String(text ?? '');
  const usable = terms.filter(Boolean);
  if (!usable.length || !source) return source ? [{ text: source, hit: false }] : [];
  const pattern = new RegExp(usable.map(term => term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'giu');
  const pieces = [];
  let at = 0;
  for (const match of source.matchAll(pattern)) {
    if (!match[0]) continue;
    if (match.index > at) pieces.push({ text: source.slice(at, match.index), hit: false });
    pieces.push({ text: match[0], hit: true });
    at = match.index + match[0].length;
  }
  if (at < source.length) pieces.push({ text: source.slice(at), hit: false });
  return pieces;
}
