/**
 * The push bell: subscribes this browser to Web Push so reminders arrive as system notifications, also with
 * the tab closed. It registers /sw.js (the service worker that shows them) and hands the subscription to the
 * server. The bell's state is in `data-push`: unsupported, off, busy, on, denied or error.
 */

import { requestJson } from './api.js';
import { apiErrorText, createTranslator, LANG } from './i18n.js';

const STRINGS = {
  'zh-CN': {
    pushOff: '开启浏览器推送：关掉页面也能收到提醒',
    pushOn: '浏览器推送已开启（点击关闭）',
    pushBusy: '正在设置浏览器推送…',
    pushDenied: '浏览器已禁止本站通知：请点地址栏左侧的图标，在“网站设置”里允许通知，然后再点这里。',
    pushUnsupported: '此浏览器不支持推送通知。',
    pushInsecure: '浏览器推送需要 HTTPS（或 localhost）访问本站。',
    pushError: '无法开启浏览器推送：{reason}（点击重试）',
    pushNoService: '浏览器连不上它的推送服务',
    pushFailed: '出错了',
  },
  en: {
    pushOff: 'Turn on browser push: reminders arrive with the tab closed',
    pushOn: 'Browser push is on (click to turn off)',
    pushBusy: 'Setting up browser push…',
    pushDenied: 'Notifications are blocked for this site: click the icon left of the address, allow notifications '
      + 'in the site settings, then click here again.',
    pushUnsupported: 'This browser does not support push notifications.',
    pushInsecure: 'Browser push needs this site over HTTPS (or localhost).',
    pushError: 'Cannot turn on browser push: {reason} (click to retry)',
    pushNoService: 'the browser cannot reach its push service',
    pushFailed: 'something went wrong',
  },
};
const { t } = createTranslator(LANG, STRINGS);

// ---- the server's push endpoints ----

const getPushKey = () => requestJson('/api/push/key');
const savePushSubscription = (subscription, name) =>
  requestJson('/api/push/subscriptions', { method: 'POST', body: { subscription, name } });
const deletePushSubscription = endpoint =>
  requestJson('/api/push/subscriptions', { method: 'DELETE', body: { endpoint } });

// ---- pure helpers (unit-tested with node --test) ----

/** The bytes of a base64url string: the form pushManager.subscribe takes in every browser. */
export function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(base64url.length / 4) * 4, '=');
  return Uint8Array.from(atob(base64), c => c.charCodeAt(0));
}

/** A short name for this browser from its user agent, e.g. "Chrome · Android", as the channel list shows it. */
export function deviceName(userAgent = '') {
  const browsers = [[/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/Firefox\//, 'Firefox'], [/Chrom(e|ium)\//, 'Chrome'],
    [/Safari\//, 'Safari']];
  const systems = [[/Android/, 'Android'], [/iPhone/, 'iPhone'], [/iPad/, 'iPad'], [/Windows/, 'Windows'],
    [/Mac OS X|Macintosh/, 'macOS'], [/CrOS/, 'ChromeOS'], [/Linux/, 'Linux']];
  const browser = browsers.find(([pattern]) => pattern.test(userAgent))?.[1] ?? 'Browser';
  const system = systems.find(([pattern]) => pattern.test(userAgent))?.[1];
  return system ? `${browser} · ${system}` : browser;
}

/** Whether a subscription was made with the server's key `serverKey` (the data folder may have been reset). */
export function madeWithKey(subscription, serverKey) {
  const own = subscription?.options?.applicationServerKey;
  if (!own) return true;  // not told: assume it matches
  const mine = new Uint8Array(own);
  const theirs = keyBytes(serverKey);
  return mine.length === theirs.length && mine.every((byte, i) => byte === theirs[i]);
}

/** Why this page cannot use push at all, or '' when it can. */
function supportProblem() {
  if (!window.isSecureContext) return t('pushInsecure');  // no service workers over plain http
  const can = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  return can ? '' : t('pushUnsupported');
}

/** Why subscribing failed, in one phrase: the push service out of reach, the server's answer, or the browser's. */
function failureReason(error) {
  if (error?.name === 'ApiError') return apiErrorText(error);
  if (error?.name === 'AbortError') return t('pushNoService');  // Chrome: "push service not available"
  return error?.message || t('pushFailed');
}

// ---- the bell ----

export class PushBell {
  #button;
  #state = 'off';
  #channelId = null;  // this browser's channel on the server, `push-<n>`

  constructor({ button }) {
    this.#button = button;
    button.addEventListener('click', () => this.toggle());
    const unsupported = supportProblem();
    if (unsupported) this.#show('unsupported', unsupported);
    else this.#show(Notification.permission === 'denied' ? 'denied' : 'off');
  }

  get state() { return this.#state; }

  /** The state this browser is in: supported at all, permission, and an existing subscription. */
  async load() {
    if (supportProblem() || Notification.permission === 'denied') return;  // shown since the start
    try {
      const registration = await navigator.serviceWorker.getRegistration('/');
      const subscription = await registration?.pushManager.getSubscription();
      if (!subscription) return this.#show('off');
      const { public_key: key } = await getPushKey();
      if (!madeWithKey(subscription, key)) {  // the server has a new key: this subscription can never be used
        await subscription.unsubscribe();
        return this.#show('off');
      }
      // Told again: the server may have dropped it (a 410 once) or lost its data folder; the same id comes back.
      this.#channelId = await this.#save(subscription);
      this.#show('on');
    } catch {
      this.#show('off');
    }
  }

  /** The channel `channelId` was deleted in the channels panel: when it is this browser, stop its subscription
   * here too, or the next load would hand it to the server again. */
  async forget(channelId) {
    if (channelId !== this.#channelId) return;
    this.#channelId = null;
    const registration = await navigator.serviceWorker.getRegistration('/');
    await (await registration?.pushManager.getSubscription())?.unsubscribe();
    this.#show('off');
  }

  /** Click: subscribe when off (asking for permission on this click), unsubscribe when on. */
  async toggle() {
    if (this.#state === 'busy' || this.#state === 'unsupported') return;
    const wasOn = this.#state === 'on';
    this.#show('busy');
    try {
      if (wasOn) await this.#unsubscribe();
      else await this.#subscribe();
    } catch (error) {
      this.#show('error', failureReason(error));
    }
  }

  async #subscribe() {
    const permission = await Notification.requestPermission();  // first, while the click still counts
    if (permission !== 'granted') return this.#show(permission === 'denied' ? 'denied' : 'off');
    const registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    await navigator.serviceWorker.ready;
    const { public_key: key } = await getPushKey();
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: keyBytes(key),
    });
    try {
      this.#channelId = await this.#save(subscription);
    } catch (error) {
      await subscription.unsubscribe().catch(() => {});  // the server does not know it: leave nothing half-made
      throw error;
    }
    this.#show('on');
  }

  /** Hand the subscription to the server; its channel id. */
  async #save(subscription) {
    const { channel } = await savePushSubscription(subscription.toJSON(), deviceName(navigator.userAgent));
    return channel.id;
  }

  async #unsubscribe() {
    const registration = await navigator.serviceWorker.getRegistration('/');
    const subscription = await registration?.pushManager.getSubscription();
    if (subscription) {
      await deletePushSubscription(subscription.endpoint);
      await subscription.unsubscribe();
    }
    this.#show('off');
  }

  #show(state, reason = '') {
    this.#state = state;
    const label = {
      unsupported: reason,
      off: t('pushOff'),
      busy: t('pushBusy'),
      on: t('pushOn'),
      denied: t('pushDenied'),
      error: t('pushError', { reason }),
    }[state];
    const button = this.#button;
    button.dataset.push = state;
    button.title = label;
    button.setAttribute('aria-label', label);
    button.setAttribute('aria-pressed', String(state === 'on'));
    button.setAttribute('aria-busy', String(state === 'busy'));
    button.disabled = state === 'unsupported';
  }
}
