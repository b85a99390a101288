// Language choice and string fallbacks: zh-CN by default, English when preferred, never a blank.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createTranslator, DEFAULT_LANGUAGE, LANG, pickLanguage, STRINGS, t } from '../../static/js/i18n.js';

describe('pickLanguage', () => {
  test('zh-CN when the browser says nothing', () => {
    assert.equal(pickLanguage([]), 'zh-CN');
    assert.equal(pickLanguage(['']), 'zh-CN');
    assert.equal(pickLanguage(), 'zh-CN');
  });

  test('English when the browser prefers English', () => {
    assert.equal(pickLanguage(['en-US']), 'en');
    assert.equal(pickLanguage(['EN-gb', 'zh-CN']), 'en');
    assert.equal(pickLanguage(['fr-FR', 'en']), 'en', 'the first language we have wins');
  });

  test('Chinese when the browser prefers any Chinese over English', () => {
    assert.equal(pickLanguage(['zh-CN', 'en-US']), 'zh-CN');
    assert.equal(pickLanguage(['zh-TW', 'en']), 'zh-CN');
    assert.equal(pickLanguage(['de', 'zh-Hans-CN', 'en']), 'zh-CN');
  });

  test('an unknown language falls back to zh-CN', () => {
    assert.equal(pickLanguage(['fr-FR', 'de', 'ja']), 'zh-CN');
  });
});

describe('createTranslator', () => {
  test('zh-CN and en say their own words', () => {
    assert.equal(createTranslator('zh-CN').t('send'), '发送');
    assert.equal(createTranslator('en').t('send'), 'Send');
    assert.equal(createTranslator('en').lang, 'en');
  });

  test('an unknown language gets the zh-CN strings', () => {
    const { lang, t: translate, errorText } = createTranslator('fr');
    assert.equal(lang, 'zh-CN');
    assert.equal(translate('send'), '发送');
    assert.equal(errorText('network'), STRINGS['zh-CN'].errors.network);
  });

  test('a key missing in English falls back to zh-CN, then to the key itself', () => {
    const strings = {
      'zh-CN': { onlyChinese: '只有中文', both: '两种', errors: { gone: '中文错误', default: '出错了' } },
      en: { both: 'Both', errors: { default: 'Something went wrong' } },
    };
    const { t: translate, errorText } = createTranslator('en', strings);
    assert.equal(translate('both'), 'Both');
    assert.equal(translate('onlyChinese'), '只有中文');
    assert.equal(translate('nowhere'), 'nowhere');
    assert.equal(errorText('gone'), '中文错误');
    assert.equal(errorText('never_heard_of'), 'Something went wrong');
  });

  test('an empty string is a translation, not a missing one', () => {
    assert.equal(createTranslator('en').t('remindersOff'), '');
  });

  test('fills {name} placeholders, and blanks the ones not given', () => {
    assert.equal(createTranslator('en').t('nextReminder', { time: '09:30' }), 'Next reminder: 09:30');
    assert.equal(createTranslator('zh-CN').t('nextReminder', { time: '09:30' }), '下次提醒：09:30');
    assert.equal(createTranslator('en').t('nextReminder'), 'Next reminder: ');
  });

  test('a key naming a table, not a string, gives the key back', () => {
    assert.equal(createTranslator('en').t('errors'), 'errors');
  });

  test('unknown error codes get the generic sentence of the language', () => {
    assert.equal(createTranslator('en').errorText('http_418'), STRINGS.en.errors.default);
    assert.equal(createTranslator('zh-CN').errorText(undefined), STRINGS['zh-CN'].errors.default);
  });
});

describe('the tables', () => {
  test('English has every key and error code zh-CN has', () => {
    const missing = Object.keys(STRINGS['zh-CN']).filter(key => !(key in STRINGS.en));
    const missingErrors = Object.keys(STRINGS['zh-CN'].errors).filter(code => !(code in STRINGS.en.errors));
    assert.deepEqual([missing, missingErrors], [[], []]);
  });

  test('the page language comes from the environment: zh-CN without a navigator (Node 20)', () => {
    assert.equal(DEFAULT_LANGUAGE, 'zh-CN');
    const expected = globalThis.navigator ? pickLanguage(globalThis.navigator.languages ?? []) : 'zh-CN';
    assert.equal(LANG, expected);
    assert.equal(t('title'), STRINGS[expected].title);
  });
});

describe('resumable replies', () => {
  test('the reconnecting note and the interrupted error have their own words in both languages', () => {
    for (const language of ['zh-CN', 'en']) {
      const { t: translate, errorText } = createTranslator(language);
      assert.equal(translate('reconnecting'), STRINGS[language].reconnecting);
      assert.notEqual(errorText('interrupted'), errorText('default'));
      assert.notEqual(errorText('message_not_found'), errorText('default'));
    }
    assert.notEqual(STRINGS.en.reconnecting, STRINGS['zh-CN'].reconnecting);
  });
});
