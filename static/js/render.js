/** Elements for messages: sanitized markdown, code blocks, thinking, meta line, error box. Stateless. */

import { LANG, errorText, t } from './i18n.js';
import { renderReminderExtras } from './reminder_views.js';
import { isFailedReply } from './retry.js';
import { showTurnUsage } from './usage.js';

/** The event a Retry button sends up from its message element; the chat decides whether to answer it. */
export const RETRY_EVENT = 'retry-turn';

// marked, DOMPurify and hljs are the vendored UMD scripts: classic scripts that run before the modules
// and leave globals. They are read when used, so importing this file needs none of them.

/** A new element with a class list and optional text. */
export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Once at boot: every sanitized link opens in a new tab without giving it our window. */
export function configureSanitizer() {
  const { DOMPurify, marked } = globalThis;
  DOMPurify.addHook('afterSanitizeAttributes', node => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
  });
  marked.setOptions({ gfm: true, breaks: true });
}

/** Markdown → sanitized HTML. Nothing the model writes can run script or style the page. */
export function markdownToSafeHtml(text) {
  const { DOMPurify, marked } = globalThis;
  return DOMPurify.sanitize(marked.parse(text || ''), {
    FORBID_TAGS: ['style', 'form', 'iframe', 'object', 'embed'],
    FORBID_ATTR: ['style'],
  });
}

/**
 * Longest code block that is highlighted, in characters. Even with a named language, highlighting
 * costs time in proportion to the text, and every reply on screen is drawn again on each load.
 */
export const HIGHLIGHT_MAX_CHARS = 20_000;

/** The language a fenced code block names (`language-python` → `python`), or ''. */
export function codeLanguage(className) {
  return (String(className).match(/language-([\w+#-]+)/) || [])[1] || '';
}

/**
 * Whether to colour a code block: only when its language is named and known and the block is not
 * huge. Never guessed: highlight.js's auto-detection tries every language and takes tens of seconds
 * on a long block (40,000 characters of hex), freezing the page on every load.
 */
export function shouldHighlight(language, length, isKnown) {
  return Boolean(language) && length <= HIGHLIGHT_MAX_CHARS && isKnown(language);
}

/**
 * Render markdown into `container` with a copy button per code block. Code is coloured only with
 * `highlight` (a complete reply): a streaming reply is drawn again on every piece, so it stays plain.
 */
export function renderMarkdown(container, text, { highlight = true } = {}) {
  const { hljs } = globalThis;
  container.innerHTML = markdownToSafeHtml(text);
  for (const code of container.querySelectorAll('pre > code')) {
    const pre = code.parentElement;
    const language = codeLanguage(code.className);
    if (highlight && shouldHighlight(language, code.textContent.length, name => Boolean(hljs.getLanguage(name)))) {
      hljs.highlightElement(code);
    }
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
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const today = new Date().toDateString() === date.toDateString();
  const options = today ? { hour: '2-digit', minute: '2-digit' }
    : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(LANG, options).format(date);
}

/** The element for one message (stored or still streaming); it carries the message as `.message`. */
export function messageElement(message) {
  const article = make('article', `message ${message.role}`);
  const meta = make('div', 'meta');
  const body = make('div', message.role === 'user' ? 'bubble' : 'bubble markdown');
  const actions = make('div', 'message-actions');
  article.append(meta, body, actions);
  updateMessageElement(article, message);
  actions.append(copyButton(() => article.message.content || '', t('copy')));
  actions.lastChild.title = t('copyMessage');
  return article;
}

/** Refresh an element's id, flags, meta line, reasoning and body from `message`. */
export function updateMessageElement(article, message) {
  article.message = message;
  if (message.id) article.dataset.id = message.id;
  article.classList.toggle('scheduled', Boolean(message.is_scheduled));
  article.classList.toggle('stopped', Boolean(message.stopped));
  article.classList.toggle('incomplete', Boolean(message.incomplete));
  renderMeta(article.querySelector('.meta'), message);
  const body = article.querySelector('.bubble');
  if (message.role === 'user') body.textContent = message.content;
  else {
    renderReasoning(article, message.reasoning || '', false);
    renderMarkdown(body, message.content);
    renderFailure(article, message);
    renderReminderExtras(article, message);
  }
}

/**
 * A failed reply's error box under its bubble; a turn that failed before any text shows only the
 * box, not an empty bubble. Its Retry button shows while the article is `.retryable` (the chat says which).
 */
function renderFailure(article, message) {
  const failed = isFailedReply(message) && message.error_code !== 'unauthorized';  // the login form says that one
  article.classList.toggle('failed', failed && !message.content && !message.reasoning);
  article.querySelector('.turn-error')?.remove();
  if (!failed) return;
  const code = message.error_code || (message.content ? 'upstream_incomplete' : 'default');
  article.querySelector('.bubble').after(turnErrorElement({ code, detail: message.error }));
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
  else if (message.incomplete && (message.content || message.reasoning)) {  // without text, the error box says it
    const flag = make('span', 'flag', t('incomplete'));
    if (message.error) flag.title = message.error;
    meta.append(flag);
  }
  showTurnUsage(meta, message);
}

/** The collapsible thinking block, created on first use; open while thinking is live. */
function renderReasoning(article, text, live) {
  let details = article.querySelector('details.reasoning');
  if (!text) {
    details?.remove();
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

/**
 * Draw a reply still streaming: thinking in its block (open while thinking, folded once the answer
 * starts, unless the user opened or closed it by hand), the answer so far as markdown.
 */
export function renderStreamingReply(article, { content, reasoning }) {
  article.classList.remove('pending');
  article.classList.add('streaming');
  renderReasoning(article, reasoning, !content);
  const details = article.querySelector('details.reasoning');
  if (details && !details.dataset.touched) {
    details.dataset.auto = String(!content);
    details.open = !content;
  }
  renderMarkdown(article.querySelector('.bubble'), content, { highlight: false });
  article.message = { ...article.message, content };
}

/** Say on a streaming reply that its connection is lost and being opened again (`on`), or no longer. */
export function renderReconnecting(article, on) {
  article.classList.toggle('reconnecting', on);
  let note = article.querySelector('.reconnecting-note');
  if (!on) {
    note?.remove();
    return;
  }
  if (!note) {
    note = make('p', 'reconnecting-note', t('reconnecting'));
    note.setAttribute('role', 'status');
    article.querySelector('.bubble').after(note);
  }
}

/** Remember that the user toggled a thinking block, so streaming stops opening/closing it (a toggle listener). */
export function noteReasoningToggle(event) {
  const details = event.target;
  if (details.matches('details.reasoning') && String(details.open) !== details.dataset.auto) details.dataset.touched = '1';
}

/** The box under a failed reply: what went wrong, the server's own words if different, and Retry. */
export function turnErrorElement({ code, detail = '' }) {
  const box = make('div', 'turn-error');
  box.setAttribute('role', 'alert');
  const text = errorText(code);
  box.append(make('p', 'turn-error-text', text));
  if (detail && detail !== text) box.append(make('p', 'turn-error-detail', detail));
  const retry = make('button', 'retry-button', t('retry'));
  retry.type = 'button';
  retry.addEventListener('click', () => box.dispatchEvent(new CustomEvent(RETRY_EVENT, { bubbles: true })));
  box.append(retry);
  return box;
}
