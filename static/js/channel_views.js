/**
 * Push channels in words, free of the DOM: a channel's service named from its URL scheme ("Bark", "企业微信"),
 * and what a reminder's last run says about its pushes (a warning per failed or retrying channel, a count of sent).
 */

// Apprise schemes → the i18n key of the service's name; a scheme not here is shown as it is.
const SERVICE_KEYS = {
  bark: 'serviceBark', barks: 'serviceBark',
  wecombot: 'serviceWecom', wxteams: 'serviceWecom', wecom: 'serviceWecom',
  dingtalk: 'serviceDingtalk',
  feishu: 'serviceFeishu', lark: 'serviceFeishu',
  ntfy: 'serviceNtfy', ntfys: 'serviceNtfy',
  tgram: 'serviceTelegram',
  mailto: 'serviceEmail', mailtos: 'serviceEmail',
  json: 'serviceWebhook', jsons: 'serviceWebhook', xml: 'serviceWebhook', xmls: 'serviceWebhook',
  form: 'serviceWebhook', forms: 'serviceWebhook',
  schan: 'serviceServerChan',
  pushplus: 'servicePushPlus',
};

/** The name of a channel's service: a browser for Web Push, else from the scheme (`service`, or the masked URL's). */
export function serviceLabel(channel, t) {
  if (channel?.kind === 'webpush') return t('serviceBrowser');
  const scheme = String(channel?.service || String(channel?.url ?? '').split('://')[0]).toLowerCase();
  return SERVICE_KEYS[scheme] ? t(SERVICE_KEYS[scheme]) : scheme;
}

/** Whether the page may rename, re-point or delete the channel: only those added here (not NOTIFY_URLS, not browsers). */
export function isEditable(channel) {
  return channel?.source === 'user' && channel?.kind !== 'webpush';
}

/** Whether the page may delete the channel: added here, or a browser's subscription (a lost phone); not NOTIFY_URLS. */
export function isDeletable(channel) {
  return channel?.source === 'user' || channel?.source === 'browser';
}

/**
 * What a run's pushes say: `warnings`, one sentence per channel that failed or is being retried (its name and
 * the service's answer), and `sent`, how many channels got it. A run pushed nowhere says nothing.
 */
export function pushOutcome(run, t) {
  const outcomes = Object.values(run?.channels ?? {});
  const warnings = outcomes
    .filter(outcome => outcome?.status === 'failed' || outcome?.status === 'retrying')
    .map(outcome => t(outcome.status === 'failed' ? 'pushFailed' : 'pushRetrying', {
      name: outcome.channel_name ?? '', answer: outcome.answer ?? '', attempts: outcome.attempts ?? '',
    }));
  return { warnings, sent: outcomes.filter(outcome => outcome?.status === 'sent').length };
}
