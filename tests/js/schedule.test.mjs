// Reminders in words and the confirmation card's model: schedules described, times formatted, Undo requests.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createTranslator } from '../../static/js/i18n.js';
import {
  CRON_PRESETS, actionKey, cardModel, debounce, describeCron, describeSchedule, formatRun, lastRunWarning,
  messageNotes, reminderFields, undoRequest,
} from '../../static/js/schedule.js';

const zh = createTranslator('zh-CN').t;
const en = createTranslator('en').t;

describe('describeCron', () => {
  const cases = [
    ['0 8 * * *', '每天 08:00', 'Every day 08:00'],
    ['30 9 * * 1-5', '工作日 09:30', 'Weekdays 09:30'],
    ['0 9 * * mon-fri', '工作日 09:00', 'Weekdays 09:00'],
    ['15 7 * * sat,sun', '周末 07:15', 'Weekends 07:15'],
    ['0 17 * * 5', '每周五 17:00', 'Every Friday 17:00'],
    ['0 17 * * 1,3', '每周一、周三 17:00', 'Every Monday, Wednesday 17:00'],
    ['0 20 * * 7', '每周日 20:00', 'Every Sunday 20:00'],
    ['5 * * * *', '每小时第 05 分', 'Every hour at :05'],
    ['0 8 1 * *', '每月 1 日 08:00', 'Monthly on day 1, 08:00'],
    ['0 0 9 * * 1-5', '工作日 09:00', 'Weekdays 09:00'],  // the .env reminder's six fields, seconds first
  ];
  for (const [cron, chinese, english] of cases) {
    test(`${cron} in words`, () => {
      assert.equal(describeCron(cron, zh), chinese);
      assert.equal(describeCron(cron, en), english);
    });
  }

  test('anything else is shown as given', () => {
    for (const cron of ['*/5 * * * *', '0 8 * 1 *', '0 8-18/2 * * *', '0 8 1,15 * *', '0 8 * * 1-3/2', 'nonsense']) {
      assert.equal(describeCron(cron, zh), cron);
    }
  });

  test('every preset reads as words', () => {
    for (const { key, cron } of CRON_PRESETS) {
      assert.notEqual(describeCron(cron, zh), cron, key);
    }
  });
});

describe('formatRun', () => {
  const now = new Date(2026, 10, 25, 12, 0);

  test('local weekday, date and time, the year only when it is not this one', () => {
    const local = new Date(2026, 10, 26, 8, 0);
    assert.equal(formatRun(local.toISOString(), 'en', now), 'Thu, Nov 26, 08:00');
    assert.match(formatRun(local.toISOString(), 'zh-CN', now), /^11月26日周四 08:00$/);
    assert.match(formatRun(new Date(2027, 0, 1, 9, 0).toISOString(), 'en', now), /2027/);
  });

  test('seconds show when a time has them; garbage is shown as given', () => {
    assert.match(formatRun(new Date(2026, 10, 26, 8, 0, 30).toISOString(), 'en', now), /08:00:30/);
    assert.equal(formatRun('manual-x', 'en', now), 'manual-x');
  });
});

describe('undo', () => {
  const reminder = {
    id: '7', text: '喝水', at: '2026-11-26T08:00:00', cron: null, timezone: 'Asia/Shanghai', mode: 'plain',
    enabled: true, created_at: '2026-11-25T10:00:00+08:00', source: 'user', next_runs: [], done: false, last_run: null,
  };

  test('created → DELETE it', () => {
    assert.deepEqual(undoRequest({ action: 'created', reminder }), { method: 'DELETE', path: '/api/reminders/7' });
  });

  test('cancelled → POST its editable fields again', () => {
    assert.deepEqual(undoRequest({ action: 'cancelled', reminder }), {
      method: 'POST', path: '/api/reminders',
      body: { text: '喝水', at: '2026-11-26T08:00:00', timezone: 'Asia/Shanghai', mode: 'plain', enabled: true },
    });
  });

  test('updated → PATCH back to previous (its schedule replacing the new one)', () => {
    const previous = { text: '喝水', at: null, cron: '0 8 * * *', timezone: 'Asia/Shanghai', mode: 'generate', enabled: true };
    assert.deepEqual(undoRequest({ action: 'updated', reminder, previous }), {
      method: 'PATCH', path: '/api/reminders/7',
      body: { text: '喝水', cron: '0 8 * * *', timezone: 'Asia/Shanghai', mode: 'generate', enabled: true },
    });
  });

  test('nothing to undo: an update without previous, the .env reminder, an unknown action', () => {
    assert.equal(undoRequest({ action: 'updated', reminder }), null);
    assert.equal(undoRequest({ action: 'created', reminder: { ...reminder, id: 'env' } }), null);
    assert.equal(undoRequest({ action: 'listed', reminder }), null);
    assert.equal(undoRequest(null), null);
  });

  test('the card model: title, words, three times, Undo until undone', () => {
    const runs = ['2026-11-26T08:00:00+08:00', '2026-11-27T08:00:00+08:00', '2026-11-28T08:00:00+08:00', 'x'];
    const daily = { ...reminder, at: null, cron: '0 8 * * *', next_runs: runs };
    const model = cardModel({ action: 'created', reminder: daily }, { t: en, lang: 'en' });
    assert.equal(model.title, 'Reminder set');
    assert.equal(model.text, '喝水');
    assert.equal(model.schedule, 'Every day 08:00');
    assert.equal(model.nextRuns.length, 3);
    assert.equal(model.canUndo, true);
    const undone = cardModel({ action: 'created', reminder: daily }, { t: zh, lang: 'zh-CN', undone: true });
    assert.equal(undone.title, '已撤销：提醒已删除');
    assert.equal(undone.canUndo, false);
    assert.deepEqual(cardModel({ action: 'cancelled', reminder: daily }, { t: zh, lang: 'zh-CN' }).nextRuns, []);
  });

  test('one action, one key: the same change twice is one card, another change is another', () => {
    const previous = { text: 'a', cron: '0 8 * * *' };
    assert.equal(actionKey({ action: 'updated', reminder, previous }), actionKey({ action: 'updated', reminder, previous }));
    assert.notEqual(
      actionKey({ action: 'updated', reminder, previous }),
      actionKey({ action: 'updated', reminder, previous: { ...previous, text: 'b' } }),
    );
    assert.notEqual(actionKey({ action: 'created', reminder }), actionKey({ action: 'cancelled', reminder }));
  });
});

describe('a schedule in words, notes and warnings', () => {
  test('a one-off says once and when', () => {
    assert.match(describeSchedule({ at: '2026-11-26T08:00:00' }, en, 'en'), /^Once, .*Nov 26, 08:00$/);
  });

  test('a late message, and one the model failed to word, get a note; a plain one does not', () => {
    const message = { id: 5, is_scheduled: true, reminder_id: '2', generated: false, late: true };
    const reminder = { id: '2', mode: 'generate', last_run: { message_id: 5, status: 'failed', error: 'HTTP 404 — check API_URL and MODEL.' } };
    const notes = messageNotes(message, reminder, en);
    assert.deepEqual(notes.map(n => n.kind), ['late', 'not-generated']);
    assert.match(notes[1].text, /HTTP 404 — check API_URL and MODEL\.$/);
    assert.deepEqual(messageNotes({ ...message, late: false }, { ...reminder, mode: 'plain', last_run: null }, en), []);
    assert.deepEqual(messageNotes({ id: 1, role: 'assistant' }, null, en), []);
  });

  test('a failed or missed last run warns with its sentence; an ok one does not', () => {
    const failed = { last_run: { status: 'failed', scheduled_for: '2026-11-25T09:00:00+08:00', error: 'HTTP 401 — check API_KEY.' } };
    assert.match(lastRunWarning(failed, en, 'en'), /the model failed.*HTTP 401 — check API_KEY\.$/);
    assert.match(lastRunWarning({ last_run: { ...failed.last_run, status: 'missed' } }, zh, 'zh-CN'), /错过/);
    assert.equal(lastRunWarning({ last_run: { status: 'ok' } }, en, 'en'), null);
    assert.equal(lastRunWarning({ last_run: null }, en, 'en'), null);
  });
});

describe('reminderFields', () => {
  test('a one-off from datetime-local gets seconds; a recurring one sends only its cron', () => {
    assert.deepEqual(
      reminderFields({ text: ' 吃药 ', kind: 'at', at: '2026-11-26T08:00', cron: '0 8 * * *', mode: 'plain', timezone: 'Asia/Shanghai' }),
      { text: '吃药', mode: 'plain', at: '2026-11-26T08:00:00', timezone: 'Asia/Shanghai' },
    );
    assert.deepEqual(reminderFields({ text: 'x', kind: 'cron', at: '2026-11-26T08:00', cron: ' 0 9 * * 1-5 ' }), {
      text: 'x', mode: 'generate', cron: '0 9 * * 1-5',
    });
  });
});

describe('debounce', () => {
  test('calls once, after typing stops, with the last arguments; cancel drops it', () => {
    let clock = 0;
    const timers = new Map();
    let next = 1;
    const fake = {
      setTimeout: (fn, ms) => { timers.set(next, { fn, at: clock + ms }); return next++; },
      clearTimeout: id => timers.delete(id),
    };
    const advance = ms => {
      clock += ms;
      for (const [id, timer] of [...timers]) if (timer.at <= clock) { timers.delete(id); timer.fn(); }
    };
    const calls = [];
    const preview = debounce(value => calls.push(value), 300, fake);
    preview('0'); advance(100); preview('0 8'); advance(100); preview('0 8 * * *');
    advance(299);
    assert.deepEqual(calls, []);
    advance(1);
    assert.deepEqual(calls, ['0 8 * * *']);
    preview('x'); preview.cancel(); advance(1000);
    assert.deepEqual(calls, ['0 8 * * *']);
  });
});
