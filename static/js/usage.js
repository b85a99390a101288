/**
 * Token usage on the page: a reply's tokens (the title of its time, on hover) and this month's total in the
 * header's usage popover, from GET /api/usage. The month is the server's: its days are counted in the
 * server's TIMEZONE, so the page takes "this month" from the report's `today`, never from the browser's clock.
 */

import { requestJson } from './api.js';
import { LANG, apiErrorText, t } from './i18n.js';

/**
 * Days asked for: enough to reach back to the first of any month (today minus 30 days is at the latest
 * the 1st when today is the 31st).
 */
export const MONTH_WINDOW_DAYS = 31;

/** A count as the language writes numbers (12,345). */
export function formatCount(value, lang = LANG) {
  return new Intl.NumberFormat(lang).format(Number(value) || 0);
}

/** A whole number from a usage field; anything else counts as 0. */
function count(value) {
  return Number.isFinite(value) ? value : 0;
}

/**
 * A reply's tokens in one line ("输入 120 · 输出 80 · 共 200 tokens"), or '' when the provider reported none.
 * `translate` and `lang` are for tests; the page uses its own.
 */
export function usageLine(usage, translate = t, lang = LANG) {
  if (!usage || typeof usage !== 'object') return '';
  const prompt = count(usage.prompt_tokens);
  const completion = count(usage.completion_tokens);
  const total = count(usage.total_tokens) || prompt + completion;
  if (!total) return '';
  return translate('turnUsage', {
    prompt: formatCount(prompt, lang), completion: formatCount(completion, lang), total: formatCount(total, lang),
  });
}

/**
 * This month's sums from a usage report: the `by_day` entries of the month of the report's `today` (the
 * server's day), so a browser in another zone, or just past midnight, still gets the server's month.
 */
export function monthTotals(report) {
  const month = String(report?.today ?? '').slice(0, 7);  // YYYY-MM
  const totals = { month, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, messages: 0 };
  if (!month) return totals;
  for (const day of report.by_day ?? []) {
    if (!String(day.date).startsWith(`${month}-`)) continue;
    for (const key of ['prompt_tokens', 'completion_tokens', 'total_tokens', 'messages']) totals[key] += count(day[key]);
  }
  return totals;
}

/** "2026年11月" / "November 2026", for the month YYYY-MM (read as a calendar month, in no zone). */
export function monthName(month, lang = LANG) {
  const [year, number] = String(month).split('-').map(Number);
  if (!year || !number) return '';
  return new Intl.DateTimeFormat(lang, { year: 'numeric', month: 'long', timeZone: 'UTC' })
    .format(new Date(Date.UTC(year, number - 1, 1)));
}

/** GET /api/usage for the last `days` days. */
export const getUsage = (days = MONTH_WINDOW_DAYS) => requestJson(`/api/usage?days=${encodeURIComponent(days)}`);

/** Put a reply's tokens on its time's title (under the full date), and on the meta line for the rest of it. */
export function showTurnUsage(meta, message) {
  const line = message.role === 'assistant' ? usageLine(message.usage) : '';
  const time = meta.querySelector('time');
  meta.title = line;  // '' drops a title left by an earlier drawing
  if (time && line) time.title = time.title ? `${time.title}\n${line}` : line;
}

/**
 * The header's usage button and its popover (the native `popover`: light dismiss and Escape for free).
 * Each opening asks the server again, so the total follows the turns taken since.
 */
export class UsageMenu {
  constructor({ button, popover, month, total, split, replies, status }) {
    Object.assign(this, { button, popover, month, total, split, replies, status });
    this.asked = 0;  // answers to older openings are dropped
    popover.addEventListener('toggle', event => {
      button.setAttribute('aria-expanded', String(event.newState === 'open'));
      if (event.newState === 'open') this.load();
    });
    document.addEventListener('keydown', event => {  // while capturing: before the page's own Escape (Stop)
      if (event.key !== 'Escape' || !popover.matches(':popover-open')) return;
      event.stopPropagation();  // Escape closes the popover; it does not also stop a reply
      popover.hidePopover();
    }, true);
  }

  async load() {
    const asked = ++this.asked;
    this.popover.setAttribute('aria-busy', 'true');
    this.status.textContent = t('usageLoading');
    this.status.hidden = false;
    try {
      const report = await getUsage();
      if (asked === this.asked) this.show(report);
    } catch (error) {
      if (asked !== this.asked) return;
      this.status.textContent = t('usageFailed', { reason: apiErrorText(error) });
    } finally {
      if (asked === this.asked) this.popover.removeAttribute('aria-busy');
    }
  }

  /** Draw this month's totals from `report`. */
  show(report) {
    const totals = monthTotals(report);
    this.month.textContent = t('usageMonth', { month: monthName(totals.month), zone: report.timezone ?? '' });
    this.total.textContent = t('usageTokens', { n: formatCount(totals.total_tokens) });
    this.total.dataset.tokens = String(totals.total_tokens);
    this.split.textContent = t('usageSplit', {
      prompt: formatCount(totals.prompt_tokens), completion: formatCount(totals.completion_tokens),
    });
    this.replies.textContent = t('usageReplies', { n: formatCount(totals.messages) });
    this.status.textContent = totals.messages ? '' : t('usageNone');
    this.status.hidden = Boolean(totals.messages);
    this.split.hidden = this.replies.hidden = !totals.messages;  // "0 tokens" and the sentence say it all
  }
}
