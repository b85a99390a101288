// Paging through the conversation with a fake server: newest page, before, after, has_more, known ids.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MessageHistory } from '../../static/js/history.js';

const message = id => ({ id, role: id % 2 ? 'user' : 'assistant', content: `m${id}` });
const ids = messages => messages.map(m => m.id);

/** A server holding messages 1..count that answers pages of `size`, recording each query. */
function fakeServer(count, size = 3) {
  const all = Array.from({ length: count }, (_, i) => message(i + 1));
  const queries = [];
  const fetchPage = async (query = {}) => {
    queries.push(query);
    let candidates = all;
    if (query.before !== undefined) candidates = all.filter(m => m.id < query.before).slice(-size);
    else if (query.after !== undefined) candidates = all.filter(m => m.id > query.after).slice(0, size);
    else candidates = all.slice(-size);
    const first = candidates[0]?.id;
    const last = candidates.at(-1)?.id;
    const hasMore = query.after !== undefined ? all.some(m => m.id > last) : all.some(m => m.id < first);
    return { messages: candidates, has_more: candidates.length > 0 && hasMore };
  };
  return { all, queries, fetchPage, add: () => all.push(message(all.length + 1)) };
}

describe('MessageHistory', () => {
  test('loads the newest page and knows what lies before it', async () => {
    const server = fakeServer(10);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    assert.deepEqual(ids(await history.loadNewest()), [8, 9, 10]);
    assert.equal(history.oldestId, 8);
    assert.equal(history.hasMore, true);
    assert.equal(history.newestId, 10);
    assert.ok(history.knows(9) && !history.knows(7));
  });

  test('loads older pages with before until has_more ends', async () => {
    const server = fakeServer(7);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    await history.loadNewest();
    const shown = [];
    while (history.canLoadOlder) await history.loadOlder(messages => shown.push(ids(messages)));
    assert.deepEqual(shown, [[2, 3, 4], [1]]);
    assert.deepEqual(server.queries.slice(1), [{ before: 5 }, { before: 2 }]);
    assert.equal(history.hasMore, false);
    assert.equal(history.oldestId, 1);
  });

  test('one older page at a time: a second call while loading shares the first request', async () => {
    const server = fakeServer(10);
    const changes = [];
    const history = new MessageHistory({ fetchPage: server.fetchPage, onChange: () => changes.push(history.loadingOlder) });
    await history.loadNewest();
    let shows = 0;
    const first = history.loadOlder(() => { shows += 1; });
    const second = history.loadOlder(() => { shows += 1; });
    assert.equal(first, second);
    assert.equal(history.loadingOlder, true);
    await first;
    assert.equal(shows, 1);
    assert.equal(server.queries.length, 2);
    assert.equal(history.loadingOlder, false);
    assert.deepEqual(changes, [false, true, false], 'told when loading starts and ends');
  });

  test('nothing older to load resolves at once without asking', async () => {
    const server = fakeServer(2);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    await history.loadNewest();
    assert.equal(history.canLoadOlder, false);
    await history.loadOlder(() => assert.fail('nothing to show'));
    assert.equal(server.queries.length, 1);
  });

  test('a failed older page can be asked for again', async () => {
    const server = fakeServer(10);
    let fail = true;
    const history = new MessageHistory({
      fetchPage: (query = {}) => (query.before && fail ? Promise.reject(new Error('offline')) : server.fetchPage(query)),
    });
    await history.loadNewest();
    await assert.rejects(history.loadOlder(() => {}), /offline/);
    assert.equal(history.loadingOlder, false);
    fail = false;
    const shown = [];
    await history.loadOlder(messages => shown.push(...ids(messages)));
    assert.deepEqual(shown, [5, 6, 7]);
  });

  test('newer pages follow has_more with after, and skip what the page already has', async () => {
    const server = fakeServer(3);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    await history.loadNewest();
    for (let i = 0; i < 5; i += 1) server.add();  // 4..8 arrive (reminders, another tab)
    history.remember(5);  // e.g. a turn this page streamed itself
    const pages = [];
    for await (const fresh of history.newerPages()) pages.push(ids(fresh));
    assert.deepEqual(pages, [[4, 6], [7, 8]]);
    assert.deepEqual(server.queries.slice(1), [{ after: 3 }, { after: 6 }]);
    assert.equal(history.newestId, 8);
    const again = [];
    for await (const fresh of history.newerPages()) again.push(ids(fresh));
    assert.deepEqual(again, [[]], 'a later poll finds nothing new');
  });

  test('a message stored while a turn streamed is found, though the turn\'s ids are newer', async () => {
    const server = fakeServer(2);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    await history.loadNewest();
    server.add();  // 3: the turn's user message
    server.add();  // 4: a reminder, stored while the reply streamed
    server.add();  // 5: the reply
    history.remember(3, 5);  // the page drew the turn itself
    const pages = [];
    for await (const fresh of history.newerPages()) pages.push(ids(fresh));
    assert.deepEqual(pages, [[4]]);
    assert.deepEqual(server.queries.at(-1), { after: 2 });
  });

  test('loading the newest page again forgets what was known', async () => {
    const server = fakeServer(6);
    const history = new MessageHistory({ fetchPage: server.fetchPage });
    await history.loadNewest();
    history.remember(100);
    await history.loadNewest();
    assert.equal(history.knows(100), false);
    assert.equal(history.newestId, 6);
  });

  test('clearing leaves nothing older to load but keeps the known ids', async () => {
    const server = fakeServer(10);
    let changed = 0;
    const history = new MessageHistory({ fetchPage: server.fetchPage, onChange: () => { changed += 1; } });
    await history.loadNewest();
    history.cleared();
    assert.equal(history.canLoadOlder, false);
    assert.equal(history.oldestId, null);
    assert.ok(history.knows(10));
    assert.equal(history.newestId, 10, 'polling goes on after the cleared messages');
    assert.equal(changed, 2);
  });
});
