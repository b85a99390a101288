/** The UI strings (zh-CN default, English), picking the language, and filling the page's data-i18n* markup. */

export const DEFAULT_LANGUAGE = 'zh-CN';

export const STRINGS = {
  'zh-CN': {
    title: 'AI 聊天助手',
    placeholder: '输入消息，Enter 发送，Shift+Enter 换行',
    send: '发送',
    stop: '停止',
    newChat: '新对话（清空记录）',
    confirmClear: '清空当前对话？记录会归档在服务器上。',
    logout: '退出登录',
    notifyEnable: '开启定时提醒通知',
    notifyDisable: '关闭定时提醒通知',
    notifyDenied: '浏览器已禁止通知，请在站点设置中允许。',
    notifyUnsupported: '此浏览器不支持通知。',
    notConfiguredTitle: '尚未配置 API_KEY',
    notConfiguredBody: '请在 .env 中设置 API_KEY，然后重启服务。聊天记录仍可查看。',
    empty: '有什么可以帮你的？',
    you: '你',
    assistant: '助手',
    reminder: '定时提醒',
    thinking: '思考中…',
    reasoning: '思考过程',
    stopped: '已停止',
    incomplete: '未完成',
    copy: '复制',
    copied: '已复制',
    copyMessage: '复制消息',
    retry: '重试',
    charCount: '{count} / {limit}',
    tooLong: '超出 {over} 个字符，请删减后再发送',
    loadingOlder: '正在加载更早的消息…',
    historyStart: '— 对话开始 —',
    nextReminder: '下次提醒：{time}',
    remindersOff: '',
    reminderFailed: '上次定时提醒（{time}）没有发出：{reason}',
    tokenLabel: '访问令牌',
    login: '登录',
    loginFailed: '令牌不正确，请重试。',
    loginRequired: '请输入访问令牌。',
    errors: {
      network: '无法连接到服务器，请检查网络后重试。',
      not_configured: '聊天尚未配置：请在 .env 中设置 API_KEY 并重启服务。',
      upstream_rate_limited: '模型服务繁忙（请求过多），请稍后重试。',
      upstream_timeout: '模型服务响应超时，请重试。',
      upstream_unreachable: '无法连接到模型服务，请稍后重试。',
      upstream_auth_failed: '模型服务拒绝了 API_KEY，请检查配置。',
      upstream_incomplete: '回复在完成前中断了。',
      upstream_bad_response: '模型服务返回了无法识别的内容。',
      message_too_long: '消息太长了。',
      storage_unavailable: '服务器无法保存聊天记录。',
      rate_limited: '请求太频繁了，请稍后再试。',
      stream_ended: '连接在回复完成前断开了。',
      default: '出错了，请重试。',
    },
  },
  en: {
    title: 'AI Chat',
    placeholder: 'Message… Enter to send, Shift+Enter for a new line',
    send: 'Send',
    stop: 'Stop',
    newChat: 'New chat (clear history)',
    confirmClear: 'Clear this conversation? It stays archived on the server.',
    logout: 'Log out',
    notifyEnable: 'Turn on reminder notifications',
    notifyDisable: 'Turn off reminder notifications',
    notifyDenied: 'Notifications are blocked; allow them in the site settings.',
    notifyUnsupported: 'This browser does not support notifications.',
    notConfiguredTitle: 'API_KEY is not set',
    notConfiguredBody: 'Set API_KEY in .env and restart the server. History can still be read.',
    empty: 'How can I help?',
    you: 'You',
    assistant: 'Assistant',
    reminder: 'Reminder',
    thinking: 'Thinking…',
    reasoning: 'Reasoning',
    stopped: 'Stopped',
    incomplete: 'Incomplete',
    copy: 'Copy',
    copied: 'Copied',
    copyMessage: 'Copy message',
    retry: 'Retry',
    charCount: '{count} / {limit}',
    tooLong: '{over} characters over the limit; shorten it to send',
    loadingOlder: 'Loading older messages…',
    historyStart: '— Start of conversation —',
    nextReminder: 'Next reminder: {time}',
    remindersOff: '',
    reminderFailed: 'The last reminder ({time}) was not sent: {reason}',
    tokenLabel: 'Access token',
    login: 'Log in',
    loginFailed: 'Wrong token, please try again.',
    loginRequired: 'Enter the access token.',
    errors: {
      network: 'Cannot reach the server. Check the connection and retry.',
      not_configured: 'Chat is not configured: set API_KEY in .env and restart.',
      upstream_rate_limited: 'The model service is busy (too many requests). Try again shortly.',
      upstream_timeout: 'The model service timed out. Please retry.',
      upstream_unreachable: 'Cannot reach the model service. Try again shortly.',
      upstream_auth_failed: 'The model service rejected the API_KEY; check the configuration.',
      upstream_incomplete: 'The reply was cut off before it finished.',
      upstream_bad_response: 'The model service sent something unreadable.',
      message_too_long: 'The message is too long.',
      storage_unavailable: 'The server cannot save the history.',
      rate_limited: 'Too many requests; try again later.',
      stream_ended: 'The connection closed before the reply finished.',
      default: 'Something went wrong. Please retry.',
    },
  },
};

/** English when the browser prefers English over Chinese, else Chinese (also for any other language). */
export function pickLanguage(preferred = []) {
  for (const tag of preferred) {
    const lower = String(tag ?? '').toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return DEFAULT_LANGUAGE;
}

/**
 * The string functions for `language`. A key missing there falls back to zh-CN, then to the key itself,
 * so a half-translated table never shows a blank.
 */
export function createTranslator(language, strings = STRINGS) {
  const lang = Object.hasOwn(strings, language) ? language : DEFAULT_LANGUAGE;
  const own = strings[lang];
  const fallback = strings[DEFAULT_LANGUAGE] ?? {};

  /** The string `key`, with {name} placeholders filled from `vars`. */
  function t(key, vars = {}) {
    const text = own[key] ?? fallback[key] ?? key;
    if (typeof text !== 'string') return key;
    return text.replace(/\{(\w+)\}/g, (_, name) => vars[name] ?? '');
  }

  /** A user-facing sentence for an API error code; unknown codes get the generic one. */
  function errorText(code) {
    const ownErrors = own.errors ?? {};
    const fallbackErrors = fallback.errors ?? {};
    return ownErrors[code] ?? fallbackErrors[code] ?? ownErrors.default ?? fallbackErrors.default ?? String(code);
  }

  return { lang, t, errorText };
}

/** The browser's preference list; empty where there is no navigator (Node 20 runs these modules in tests). */
function browserLanguages() {
  const nav = globalThis.navigator;
  if (!nav) return [];
  return nav.languages?.length ? nav.languages : [nav.language ?? ''];
}

const page = createTranslator(pickLanguage(browserLanguages()));
export const { lang: LANG, t, errorText } = page;

const ATTRIBUTE_KEYS = [['i18nPlaceholder', 'placeholder'], ['i18nTitle', 'title'], ['i18nAriaLabel', 'aria-label']];

/** Fill every data-i18n* attribute of the static markup and set <html lang> and the title. */
export function applyTranslations(doc) {
  doc.documentElement.lang = LANG;
  doc.title = t('title');
  for (const node of doc.querySelectorAll('[data-i18n]')) node.textContent = t(node.dataset.i18n);
  for (const [dataKey, attribute] of ATTRIBUTE_KEYS) {
    const dataAttribute = `data-${dataKey.replace(/[A-Z]/g, c => '-' + c.toLowerCase())}`;
    for (const node of doc.querySelectorAll(`[${dataAttribute}]`)) node.setAttribute(attribute, t(node.dataset[dataKey]));
  }
}
