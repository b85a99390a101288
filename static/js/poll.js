/** A repeating background check on one timer: every interval, sooner on demand, never two at once. */

/** The shortest poll interval: ?poll=1 must not make a tab ask the server 200 times a second. */
export const MIN_POLL_MS = 1000;
/** The longest: a timer beyond 2^31 - 1 ms fires at once, so ?poll=3e9 would flood like ?poll=1. */
export const MAX_POLL_MS = 3_600_000;

/**
 * The poll interval in ms: ?poll=<ms> in the address, else data-poll-ms on <html>, else `fallback`;
 * within MIN_POLL_MS..MAX_POLL_MS.
 */
export function pollInterval(search, markupValue, fallback = 5000) {
  const usable = (value) => Number.isFinite(value) && value > 0;
  const fromQuery = Number(new URLSearchParams(search).get('poll'));
  const fromMarkup = Number(markupValue);
  const chosen = usable(fromQuery) ? fromQuery : usable(fromMarkup) ? fromMarkup : fallback;
  return Math.min(MAX_POLL_MS, Math.max(MIN_POLL_MS, chosen));
}

/**
 * Runs `tick()` every `intervalMs` while started. A failing tick is retried next round. soon()
 * (the tab came back, a turn ended) runs it shortly; asked during a tick, right after that tick.
 */
export class Poller {
  #tick;
  #intervalMs;
  #timer = null;
  #running = false;
  #ticking = false;
  #again = false;

  constructor(tick, intervalMs) {
    this.#tick = tick;
    this.#intervalMs = intervalMs;
  }

  get running() {
    return this.#running;
  }

  start(delay = this.#intervalMs) {
    this.#running = true;
    if (!this.#ticking) this.#schedule(delay);
  }

  soon(delay = 300) {
    if (!this.#running) return;
    if (this.#ticking) this.#again = true;
    else this.#schedule(delay);
  }

  stop() {
    this.#running = false;
    this.#again = false;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule(delay) {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), delay);
  }

  async #run() {
    this.#timer = null;
    this.#ticking = true;
    try {
      await this.#tick();
    } catch { /* e.g. offline for a moment: the next round asks again */ }
    this.#ticking = false;
    if (!this.#running) return;
    const again = this.#again;
    this.#again = false;
    this.#schedule(again ? 0 : this.#intervalMs);
  }
}
