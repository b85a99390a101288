// Which code blocks get coloured: a named, known language and not a huge block; never a guess.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { HIGHLIGHT_MAX_CHARS, codeLanguage, shouldHighlight } from '../../static/js/render.js';

const known = name => ['python', 'javascript', 'c++'].includes(name);

describe('code highlighting', () => {
  test('the language comes from the fence', () => {
    assert.equal(codeLanguage('language-python'), 'python');
    assert.equal(codeLanguage('language-c++ other'), 'c++');
    assert.equal(codeLanguage(''), '');
  });

  test('a block without a language is never guessed', () => {
    assert.equal(shouldHighlight('', 10, known), false);
    assert.equal(shouldHighlight('', 10, () => true), false);
  });

  test('an unknown language stays plain', () => {
    assert.equal(shouldHighlight('brainfart', 10, known), false);
  });

  test('a named language is coloured up to the size cap, not beyond', () => {
    assert.equal(shouldHighlight('python', 10, known), true);
    assert.equal(shouldHighlight('python', HIGHLIGHT_MAX_CHARS, known), true);
    assert.equal(shouldHighlight('python', HIGHLIGHT_MAX_CHARS + 1, known), false);
    assert.ok(HIGHLIGHT_MAX_CHARS < 40_000, 'the 40,000-character block that froze the page is over the cap');
  });
});
