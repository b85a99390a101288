// Review of issue 14's page: the Chinese page shows the server's English sentence for the import's refusals.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { STRINGS } from '../../static/js/i18n.js';

// What POST /api/import can answer besides storage: a file that is no export (400 invalid_import) and one over
// the import's own size limit (413 payload_too_large). apiErrorText() looks only in the page's own language,
// then falls back to the server's English message, so zh-CN users read English in the sidebar's status line.
for (const code of ['invalid_import', 'payload_too_large']) {
  test(`zh-CN and en both have a sentence for the import's ${code}`, () => {
    assert.equal(typeof STRINGS['zh-CN'].errors[code], 'string', `zh-CN has no errors.${code}`);
    assert.equal(typeof STRINGS.en.errors[code], 'string', `en has no errors.${code}`);
  });
}
