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
    reminders: '提醒',
    openReminders: '提醒列表',
    close: '关闭',
    newReminder: '新建提醒',
    editReminder: '编辑提醒',
    reminderTextLabel: '提醒内容',
    reminderTextPlaceholder: '例如：吃药、给妈妈打电话',
    scheduleLabel: '时间',
    scheduleKindOnce: '一次',
    scheduleKindCron: '重复',
    atLabel: '日期和时间',
    cronLabel: '重复规则（分 时 日 月 星期）',
    presetsLabel: '常用',
    presetDaily: '每天 08:00',
    presetWeekdays: '工作日 09:00',
    presetWeekly: '每周五 17:00',
    presetHourly: '每小时',
    modeLabel: '发送方式',
    modeGenerate: '由模型措辞',
    modePlain: '原样发送',
    modeGenerateShort: '模型措辞',
    modePlainShort: '原文',
    previewTitle: '接下来的提醒时间',
    previewNone: '不会再触发',
    save: '保存',
    create: '创建',
    cancel: '取消',
    pause: '暂停',
    resume: '恢复',
    runNow: '立即发送',
    edit: '编辑',
    delete: '删除',
    confirmDelete: '删除提醒“{text}”？',
    readOnly: '.env · 只读',
    paused: '已暂停',
    oneOffDone: '已发送',
    nextRun: '下次：{time}',
    lastRunOk: '上次：{time} 已发送',
    lastRunFailed: '上次（{time}）模型出错，已发送原文：{reason}',
    lastRunMissed: '上次（{time}）错过了：{reason}',
    remindersEmpty: '还没有提醒。可以在这里新建，或直接在对话里说“20分钟后提醒我喝水”。',
    remindersLoadFailed: '无法加载提醒：{reason}',
    sentNow: '已发送到对话中。',
    scheduleOnce: '一次，{time}',
    cronHourly: '每小时第 {minute} 分',
    cronDaily: '每天 {time}',
    cronWeekdays: '工作日 {time}',
    cronWeekends: '周末 {time}',
    cronWeekly: '每{days} {time}',
    cronMonthly: '每月 {day} 日 {time}',
    weekdays: '周日,周一,周二,周三,周四,周五,周六',
    listSeparator: '、',
    card_created: '已设置提醒',
    card_updated: '已修改提醒',
    card_cancelled: '已取消提醒',
    card_created_undone: '已撤销：提醒已删除',
    card_updated_undone: '已撤销：提醒已改回',
    card_cancelled_undone: '已撤销：提醒已恢复',
    nextTimes: '接下来：',
    undo: '撤销',
    markDone: '完成',
    doneState: '已完成',
    snooze: '10 分钟后再提醒',
    snoozed: '将在 {time} 再次提醒',
    noteLate: '迟发：提醒时间到时服务器没有运行，这是补发的一条。',
    noteNotGenerated: '模型没能生成这条提醒，已直接发送原文。{reason}',
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
      at_in_past: '这个时间已经过去了，请选择将来的时间。',
      invalid_at: '请填写有效的日期和时间。',
      invalid_cron: '重复规则需要五个字段：分 时 日 月 星期，例如 0 8 * * 1-5。',
      invalid_timezone: '时区无效。',
      empty_text: '请填写提醒内容。',
      missing_text: '请填写提醒内容。',
      invalid_schedule: '请选择一次性的时间，或填写重复规则。',
      reminder_not_found: '这个提醒已经不存在了。',
      reminder_read_only: '.env 中的提醒是只读的：请修改 .env 后重启服务。',
      reminder_message_not_found: '找不到这条提醒消息（对话可能已被清空）。',
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
    reminders: 'Reminders',
    openReminders: 'Reminders',
    close: 'Close',
    newReminder: 'New reminder',
    editReminder: 'Edit reminder',
    reminderTextLabel: 'Remind me to',
    reminderTextPlaceholder: 'e.g. take the pills, call mum',
    scheduleLabel: 'When',
    scheduleKindOnce: 'Once',
    scheduleKindCron: 'Repeat',
    atLabel: 'Date and time',
    cronLabel: 'Repeat rule (minute hour day month weekday)',
    presetsLabel: 'Presets',
    presetDaily: 'Every day 08:00',
    presetWeekdays: 'Weekdays 09:00',
    presetWeekly: 'Fridays 17:00',
    presetHourly: 'Every hour',
    modeLabel: 'Message',
    modeGenerate: 'Worded by the model',
    modePlain: 'Sent as written',
    modeGenerateShort: 'worded by the model',
    modePlainShort: 'as written',
    previewTitle: 'Next times',
    previewNone: 'Never fires again',
    save: 'Save',
    create: 'Create',
    cancel: 'Cancel',
    pause: 'Pause',
    resume: 'Resume',
    runNow: 'Send now',
    edit: 'Edit',
    delete: 'Delete',
    confirmDelete: 'Delete the reminder “{text}”?',
    readOnly: '.env · read-only',
    paused: 'Paused',
    oneOffDone: 'Sent',
    nextRun: 'Next: {time}',
    lastRunOk: 'Last: {time}, sent',
    lastRunFailed: 'Last run ({time}): the model failed, the text was sent as is: {reason}',
    lastRunMissed: 'Last run ({time}) was missed: {reason}',
    remindersEmpty: 'No reminders yet. Create one here, or just say “remind me in 20 minutes to drink water”.',
    remindersLoadFailed: 'Cannot load the reminders: {reason}',
    sentNow: 'Sent to the conversation.',
    scheduleOnce: 'Once, {time}',
    cronHourly: 'Every hour at :{minute}',
    cronDaily: 'Every day {time}',
    cronWeekdays: 'Weekdays {time}',
    cronWeekends: 'Weekends {time}',
    cronWeekly: 'Every {days} {time}',
    cronMonthly: 'Monthly on day {day}, {time}',
    weekdays: 'Sunday,Monday,Tuesday,Wednesday,Thursday,Friday,Saturday',
    listSeparator: ', ',
    card_created: 'Reminder set',
    card_updated: 'Reminder changed',
    card_cancelled: 'Reminder cancelled',
    card_created_undone: 'Undone: the reminder was deleted',
    card_updated_undone: 'Undone: the reminder was changed back',
    card_cancelled_undone: 'Undone: the reminder was restored',
    nextTimes: 'Next:',
    undo: 'Undo',
    markDone: 'Done',
    doneState: 'Done',
    snooze: 'Remind me in 10 min',
    snoozed: 'Will remind you again at {time}',
    noteLate: 'Late: the server was not running at the reminder’s time; this one was sent afterwards.',
    noteNotGenerated: 'The model could not word this reminder; its text was sent as is. {reason}',
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
      at_in_past: 'That time has passed; choose a time in the future.',
      invalid_at: 'Enter a valid date and time.',
      invalid_cron: 'A repeat rule has five fields: minute hour day month weekday, e.g. 0 8 * * 1-5.',
      invalid_timezone: 'The time zone is not valid.',
      empty_text: 'Say what to remind you about.',
      missing_text: 'Say what to remind you about.',
      invalid_schedule: 'Choose a time, or enter a repeat rule.',
      reminder_not_found: 'This reminder no longer exists.',
      reminder_read_only: 'The .env reminder is read-only: change .env and restart the server.',
      reminder_message_not_found: 'This reminder message is gone (the conversation may have been cleared).',
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

  /** The error's sentence in this language where there is one for its code, else the server's own sentence. */
  function apiErrorText(error) {
    const translated = own.errors?.[error?.code];
    return translated ?? (error?.message || errorText(error?.code));
  }

  return { lang, t, errorText, apiErrorText };
}

/** The browser's preference list; empty where there is no navigator (Node 20 runs these modules in tests). */
function browserLanguages() {
  const nav = globalThis.navigator;
  if (!nav) return [];
  return nav.languages?.length ? nav.languages : [nav.language ?? ''];
}

const page = createTranslator(pickLanguage(browserLanguages()));
export const { lang: LANG, t, errorText, apiErrorText } = page;

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
