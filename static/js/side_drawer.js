/**
 * The sidebar on a narrow screen: a drawer from the left, opened from the header's button and closed by a tap
 * outside, Escape, its close button, or choosing a conversation. While it is open the rest of the page is inert,
 * so Tab stays inside it. On a wide screen the sidebar is a column and none of this applies.
 */

export class SideDrawer {
  #el;
  #narrow;

  /** `el`: `sidebar`, `openButton`, `closeButton`, `backdrop`, `rest` (the page beside it); `query`: when it is a drawer. */
  constructor(el, query = '(max-width: 760px)') {
    this.#el = el;
    this.#narrow = window.matchMedia(query);
    el.openButton.addEventListener('click', () => this.open());
    el.closeButton.addEventListener('click', () => this.close());
    el.backdrop.addEventListener('click', () => this.close());
    el.sidebar.addEventListener('keydown', event => {
      if (event.key !== 'Escape' || !this.isOpen) return;
      event.stopPropagation();  // Escape closes the drawer; it does not also stop a reply
      this.close();
    });
    this.#narrow.addEventListener('change', () => this.close({ refocus: false }));
  }

  get isOpen() {
    return this.#el.sidebar.classList.contains('open');
  }

  /** Slide the drawer in (only on a narrow screen) and focus its first control. */
  open() {
    const el = this.#el;
    if (!this.#narrow.matches) return;
    el.sidebar.classList.add('open');
    el.backdrop.hidden = false;
    el.rest.inert = true;
    el.openButton.setAttribute('aria-expanded', 'true');
    (el.sidebar.querySelector('[aria-current="page"]') ?? el.closeButton).focus();
  }

  /** Slide it out; focus goes back to the header's button (unless `refocus` is false). */
  close({ refocus = true } = {}) {
    const el = this.#el;
    if (!this.isOpen) return;
    el.sidebar.classList.remove('open');
    el.backdrop.hidden = true;
    el.rest.inert = false;
    el.openButton.setAttribute('aria-expanded', 'false');
    if (refocus) el.openButton.focus();
  }
}
