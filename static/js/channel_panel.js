/**
 * The push channels panel (a modal <dialog> from the header, built like the reminders panel): every channel with
 * its service and masked address; add one (name + Apprise URL), rename it or give it a new URL, delete it, and
 * send it a test message whose answer shows under it. NOTIFY_URLS channels and browsers are shown, not edited.
 * A URL typed here is sent to the server and dropped from the page: only the server's masked form is ever shown.
 */

import { changeChannel, createChannel, deleteChannel, listChannels, testChannel } from './api.js';
import { apiErrorText, t } from './i18n.js';
import { make } from './render.js';
import { isDeletable, isEditable, serviceLabel } from './channel_views.js';
import { Drawer } from './drawer.js';

// Which field an error code is about: its sentence shows under that field.
const FIELD_OF_CODE = {
  invalid_channel_url: 'url', missing_url: 'url', invalid_url: 'url',
  invalid_channel_name: 'name', missing_name: 'name', invalid_name: 'name',
};

export class ChannelPanel {
  #el;
  #drawer;
  #onDeleted;
  #channels = [];
  #editing = null;  // the channel the form changes; null while it adds one

  /**
   * `el`: the dialog, its list and its form (see index.html); `onDeleted(channel)`: after a channel is deleted
   * here (the push button forgets this browser's).
   */
  constructor(el, { onDeleted = () => {} } = {}) {
    this.#el = el;
    this.#onDeleted = onDeleted;
    this.#drawer = new Drawer(el, { onOpen: () => this.load(), onClose: () => this.#closeForm() });
    el.newButton.addEventListener('click', () => this.#openForm(null));
    el.cancel.addEventListener('click', () => this.#closeForm());
    el.form.addEventListener('submit', event => { event.preventDefault(); this.#save(); });
    el.form.addEventListener('input', event => {
      event.target.removeAttribute('aria-invalid');
      this.#fieldError(event.target.name, '');
      el.formError.hidden = true;  // the user is fixing it
    });
  }

  async load() {
    try {
      ({ channels: this.#channels } = await listChannels());
      this.#drawer.clearFailure();
    } catch (error) {
      this.#drawer.status(t('channelsLoadFailed', { reason: apiErrorText(error) }), { failed: true });
      return;
    }
    const items = this.#channels.map(channel => this.#item(channel));
    if (!items.length) items.push(make('li', 'reminder-empty', t('channelsEmpty')));
    this.#el.list.replaceChildren(...items);
  }

  // ---- the list ----------------------------------------------------------------------------

  #item(channel) {
    const item = make('li', 'reminder-item channel-item');
    item.dataset.id = channel.id;
    const head = make('div', 'reminder-head');
    const name = make('p', 'reminder-text channel-name', channel.name);
    name.id = `channel-name-${channel.id}`;  // each button's description: which channel it acts on
    head.append(name, make('span', 'tag service', serviceLabel(channel, t)));
    if (channel.source === 'env') head.append(make('span', 'tag', t('channelEnvTag')));
    item.append(head);
    if (channel.kind !== 'webpush') item.append(make('p', 'channel-url', channel.url));

    const buttons = make('div', 'reminder-buttons');
    buttons.append(this.#button(t('testChannel'), 'test', button => this.#test(channel, button)));
    if (isEditable(channel)) buttons.append(this.#button(t('rename'), 'edit', () => this.#openForm(channel)));
    if (isDeletable(channel)) {
      buttons.append(this.#button(t('delete'), 'delete', async () => {
        if (!window.confirm(t('confirmDeleteChannel', { name: channel.name }))) return;
        await deleteChannel(channel.id);
        await this.#onDeleted(channel);
        await this.load();
      }));
    }
    for (const button of buttons.children) button.setAttribute('aria-describedby', name.id);
    const answer = make('p', 'channel-answer');
    answer.setAttribute('aria-live', 'polite');
    answer.hidden = true;
    item.append(buttons, answer);
    return item;
  }

  /** A list button: runs `action` disabled; a failure shows as the server's sentence under the channel. */
  #button(label, name, action) {
    const button = make('button', `text-button channel-${name}`, label);
    button.type = 'button';
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await action(button);
      } catch (failure) {
        const answer = button.closest('li')?.querySelector('.channel-answer');
        if (answer) this.#answer(answer, apiErrorText(failure), 'refused');
        if (failure.code === 'channel_not_found') await this.load();
      } finally {
        button.disabled = false;
      }
    });
    return button;
  }

  async #test(channel, button) {
    const answer = button.closest('li').querySelector('.channel-answer');
    this.#answer(answer, t('testing'), 'busy');
    const { delivered, answer: said } = await testChannel(channel.id);
    this.#answer(answer, t(delivered ? 'testDelivered' : 'testRefused', { answer: said }), delivered ? 'delivered' : 'refused');
  }

  #answer(node, text, state) {
    node.textContent = text;
    node.hidden = false;
    node.className = `channel-answer ${state}`;
  }

  // ---- the form ----------------------------------------------------------------------------

  /** Show the form to add a channel (null) or change `channel`: its name filled, its URL left empty (kept if so). */
  #openForm(channel) {
    const el = this.#el;
    this.#editing = channel;
    el.form.reset();
    this.#clearErrors();
    el.formTitle.textContent = t(channel ? 'editChannel' : 'newChannel');
    el.save.textContent = t(channel ? 'save' : 'create');
    el.name.value = channel?.name ?? '';
    el.url.placeholder = channel ? `${channel.url} — ${t('channelUrlKeep')}` : 'bark://api.day.app/KEY';
    el.form.hidden = false;
    el.name.focus();
  }

  #closeForm() {
    this.#el.form.reset();  // the typed URL (a secret) does not stay in the page
    this.#el.form.hidden = true;
    this.#editing = null;
  }

  #clearErrors() {
    this.#el.formError.hidden = true;
    this.#fieldError('name', '');
    this.#fieldError('url', '');
    for (const field of this.#el.form.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
  }

  #fieldError(field, text) {
    const node = { name: this.#el.nameError, url: this.#el.urlError }[field];
    if (!node) return;
    node.textContent = text;
    node.hidden = !text;
  }

  /** Add the channel, or save the change (the URL only when one was typed); a refusal shows under its field. */
  async #save() {
    const el = this.#el;
    const editing = this.#editing;
    const name = el.name.value.trim();
    const url = el.url.value.trim();
    el.save.disabled = true;
    this.#clearErrors();
    try {
      if (editing) {
        const changes = {};
        if (name !== editing.name) changes.name = name;
        if (url) changes.url = url;
        if (Object.keys(changes).length) await changeChannel(editing.id, changes);
      } else {
        await createChannel({ name, url });
      }
      this.#closeForm();
      await this.load();
      el.newButton.focus();
    } catch (error) {
      const field = FIELD_OF_CODE[error.code];
      if (field) {
        this.#fieldError(field, apiErrorText(error));
        el[field].setAttribute('aria-invalid', 'true');
        el[field].focus();
      } else {
        el.formError.textContent = apiErrorText(error);
        el.formError.hidden = false;
      }
    } finally {
      el.save.disabled = false;
    }
  }
}
