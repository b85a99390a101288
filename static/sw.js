/**
 * The service worker: shows a reminder pushed by the server, also while no tab of the app is open, and
 * brings the app forward when the notification is clicked. Served as /sw.js so its scope is the whole site.
 *
 * A push carries JSON {title, body, tag, url}. The tag is the reminder occurrence: a push the server sends
 * again for the same occurrence replaces the notification instead of adding a second one.
 */

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', event => event.waitUntil(self.clients.claim()));

/** The push's JSON, or a generic notice when it is not JSON (a push with no payload shows something too). */
function pushed(event) {
  try {
    const data = event.data?.json() ?? {};
    return typeof data === 'object' && data !== null ? data : {};
  } catch {
    return { body: event.data?.text() ?? '' };
  }
}

self.addEventListener('push', event => {
  const data = pushed(event);
  const options = {
    body: String(data.body ?? ''),
    data: { url: typeof data.url === 'string' ? data.url : '/' },
  };
  if (data.tag) {
    options.tag = String(data.tag);
    options.renotify = true;  // a replaced notification still alerts (renotify needs a tag)
  }
  event.waitUntil(self.registration.showNotification(String(data.title || 'Reminder'), options));
});

self.addEventListener('notificationclick', event => {
  event.notification.close();
  const target = new URL(event.notification.data?.url || '/', self.location.origin);
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = tabs.find(tab => new URL(tab.url).origin === target.origin);
    if (open) return open.focus();
    return self.clients.openWindow(target.href);
  })());
});
