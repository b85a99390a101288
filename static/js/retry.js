/** Which failed turn the page offers to answer again, and whether what the user sends asks for that. Free of the DOM. */

/**
 * Whether a stored assistant message records a failed turn: the server's stub for a turn that got
 * no reply (`content: ""`, `incomplete`, `error`, `error_code`) or a reply cut off by an error.
 * A reply the user stopped is not a failure.
 */
export function isFailedReply(message) {
  return message?.role === 'assistant' && Boolean(message.incomplete) && !message.stopped;
}

/**
 * The newest question if its newest reply failed and nothing answered it since: `{ id, text }`,
 * else null. Only the newest: once the user asked something else, an answer to the old question
 * would land out of place, and the server would store its words again.
 */
export function failedTurn(messages) {
  const at = messages.findLastIndex(message => message?.role === 'user');
  const question = messages[at];
  if (!question || question.id === undefined || question.id === null) return null;
  const replies = messages.slice(at + 1).filter(m => m?.role === 'assistant' && m.reply_to === question.id);
  return replies.length && isFailedReply(replies.at(-1)) ? { id: question.id, text: question.content } : null;
}

/**
 * Whether sending `text` repeats the failed turn (`{ text }`, or null): the same words as its question.
 * Pressing Enter on the words a failure put back in the box must retry, not ask a second time.
 */
export function repeatsFailedTurn(text, failed) {
  return failed !== null && failed !== undefined && text === failed.text;
}
