// Token usage on the page: a reply's line, and this month's sums taken in the server's days.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createTranslator } from '../../static/js/i18n.js';
import { MONTH_WINDOW_DAYS, monthName, monthTotals, usageLine } from '../../static/js/usage.js';

const zh = createTranslator('zh-CN').t;
const en = createTranslator('en').t;

describe("a reply's tokens", () => {
  test('are said in either language, with grouped digits', () => {
    const usage = { prompt_tokens: 1200, completion_tokens: 80, total_tokens: 1280 };
    assert.equal(usageLine(usage, zh, 'zh-CN'), '输入 1,200 · 输出 80 · 共 1,280 tokens');
    assert.equal(usageLine(usage, en, 'en'), 'Input 1,200 · output 80 · 1,280 tokens in all');
  });

  test('without a total, the total is prompt + completion', () => {
    assert.equal(usageLine({ prompt_tokens: 3, completion_tokens: 4 }, en, 'en'), 'Input 3 · output 4 · 7 tokens in all');
  });

  test('no usage, or nothing counted, says nothing', () => {
    for (const usage of [undefined, null, {}, 'x', { prompt_tokens: 0, completion_tokens: 0 }]) {
      assert.equal(usageLine(usage, en, 'en'), '');
    }
  });
});

describe("this month's total", () => {
  const report = {
    today: '2026-12-01',  // the server's day: in the browser it may still be November 30th
    by_day: [
      { date: '2026-11-01', prompt_tokens: 900, completion_tokens: 90, total_tokens: 990, messages: 9 },
      { date: '2026-11-30', prompt_tokens: 100, completion_tokens: 10, total_tokens: 110, messages: 1 },
      { date: '2026-12-01', prompt_tokens: 20, completion_tokens: 2, total_tokens: 22, messages: 2 },
    ],
  };

  test("sums only the days of the month of the server's today", () => {
    assert.deepEqual(monthTotals(report), {
      month: '2026-12', prompt_tokens: 20, completion_tokens: 2, total_tokens: 22, messages: 2,
    });
    const november = monthTotals({ ...report, today: '2026-11-30' });
    assert.equal(november.total_tokens, 1100, 'the last day of a month counts its first, not the next month');
  });

  test('a month of 31 days is reached back to its first day', () => {
    const today = new Date(Date.UTC(2026, 0, 31));
    const since = new Date(today.getTime() - (MONTH_WINDOW_DAYS - 1) * 86_400_000);
    assert.equal(since.toISOString().slice(0, 10), '2026-01-01');
  });

  test('a report without days or today sums to nothing', () => {
    assert.equal(monthTotals({}).total_tokens, 0);
    assert.equal(monthTotals({ today: '2026-12-01' }).messages, 0);
  });

  test('the month is named as a calendar month, whatever the zone', () => {
    assert.equal(monthName('2026-12', 'zh-CN'), '2026年12月');
    assert.equal(monthName('2026-12', 'en'), 'December 2026');
    assert.equal(monthName('', 'en'), '');
  });
});
