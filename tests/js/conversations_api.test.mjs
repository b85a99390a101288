// Every call carries the open conversation; the conversations' own endpoints; the import upload.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';

import {
  ApiError, changeConversation, clearHistory, conversationExportUrl, createConversation, deleteConversation,
  getHistory, importConversations, listConversations, markReminderDone, openChatStream, searchMessages, snoozeReminder,
} from '../../static/js/api.js';
import { Turn } from '../../static/js/turn.js';

const realFetch = globalThis.fetch;
let calls;

function fakeFetch(respond) {
  calls = [];
  globalThis.fetch = async (url, init = {}) => {
    calls.push({ url, init });
    return respond(url, init);
  };
}

const json = (body, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });

describe('conversation_id on every call', () => {
  beforeEach(() => fakeFetch(() => json({ success: true, messages: [], has_more: false })));
  afterEach(() => { globalThis.fetch = realFetch; });

  test('history pages and clearing name the conversation in the query', async () => {
    await getHistory({ conversationId: 'abcdefabcdef', after: 3 });
    await getHistory({ conversationId: 'main' });
    await clearHistory({ conversationId: 'abcdefabcdef' });
    assert.deepEqual(calls.map(c => [c.init.method ?? 'GET', c.url]), [
      ['GET', '/api/history?conversation_id=abcdefabcdef&after=3'],
      ['GET', '/api/history?conversation_id=main'],
      ['DELETE', '/api/history?conversation_id=abcdefabcdef'],
    ]);
  });

  test('a streamed turn names its conversation in the body', async () => {
    fakeFetch(() => new Response('data: {}\n\n', { headers: { 'Content-Type': 'text/event-stream' } }));
    await openChatStream({ message: 'hi', conversationId: 'abcdefabcdef' });
    await openChatStream({ message: 'again', retryOf: 2, conversationId: 'main' });
    assert.deepEqual(JSON.parse(calls[0].init.body), { message: 'hi', conversation_id: 'abcdefabcdef' });
    assert.deepEqual(JSON.parse(calls[1].init.body), { message: 'again', retry_of: 2, conversation_id: 'main' });
  });

  test('Done and Snooze on a reminder message name the conversation it is in, when given', async () => {
    await markReminderDone('r1', 4, { conversationId: 'abcdefabcdef' });
    await snoozeReminder('r1', 4, 10, { conversationId: 'abcdefabcdef' });
    await markReminderDone('env', 2);
    assert.deepEqual(calls.map(c => [c.url, JSON.parse(c.init.body)]), [
      ['/api/reminders/r1/done', { message_id: 4, conversation_id: 'abcdefabcdef' }],
      ['/api/reminders/r1/snooze', { message_id: 4, minutes: 10, conversation_id: 'abcdefabcdef' }],
      ['/api/reminders/env/done', { message_id: 2 }],
    ]);
  });

  test('a Turn passes its conversation to the stream it opens', async () => {
    const seen = [];
    const turn = new Turn('hi', { conversationId: 'abcdefabcdef' });
    await turn.run(async options => { seen.push(options.conversationId); throw new ApiError('x', { code: 'upstream_error', status: 502 }); });
    assert.deepEqual(seen, ['abcdefabcdef']);
  });
});

describe('the conversations endpoints', () => {
  beforeEach(() => fakeFetch(() => json({ success: true, conversation: { id: 'abcdefabcdef' }, conversations: [], results: [] })));
  afterEach(() => { globalThis.fetch = realFetch; });

  test('list, create, rename / pin, delete, search', async () => {
    await listConversations();
    await createConversation();
    await changeConversation('abcdefabcdef', { pinned: true });
    await deleteConversation('abcdefabcdef');
    await searchMessages('吃药 pill', { limit: 50 });
    assert.deepEqual(calls.map(c => [c.init.method ?? 'GET', c.url, c.init.body ?? null]), [
      ['GET', '/api/conversations', null],
      ['POST', '/api/conversations', '{}'],
      ['PATCH', '/api/conversations/abcdefabcdef', '{"pinned":true}'],
      ['DELETE', '/api/conversations/abcdefabcdef', null],
      ['GET', '/api/search?q=%E5%90%83%E8%8D%AF+pill&limit=50', null],
    ]);
    assert.equal(conversationExportUrl('abcdefabcdef', 'markdown'), '/api/conversations/abcdefabcdef/export?format=markdown');
  });

  test('import uploads the file as multipart field "file" and answers the counts', async () => {
    fakeFetch(() => json({ success: true, imported: 2, skipped: 1, conversations: [] }));
    const file = new File(['[]'], 'conversations.json', { type: 'application/json' });
    const answer = await importConversations(file);
    assert.deepEqual([answer.imported, answer.skipped], [2, 1]);
    const { url, init } = calls[0];
    assert.equal(url, '/api/import');
    assert.equal(init.method, 'POST');
    assert.ok(init.body instanceof FormData);
    assert.equal(await init.body.get('file').text(), '[]');
    assert.equal(init.headers, undefined, 'fetch writes the multipart Content-Type with its boundary');
  });

  test('an import the server refuses throws its code and sentence', async () => {
    fakeFetch(() => json({ success: false, code: 'invalid_import', error: 'The file is not a conversations.json.' }, 400));
    const error = await importConversations(new File(['x'], 'x.json')).catch(e => e);
    assert.ok(error instanceof ApiError);
    assert.deepEqual([error.code, error.message, error.status], ['invalid_import', 'The file is not a conversations.json.', 400]);
  });
});
