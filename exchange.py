"""Taking conversations out (Markdown, JSON, ChatGPT's conversations.json) and bringing them back in.

ChatGPT's export is the format other tools already read and write, so it is the one we export for
all conversations and the one we import: a list of conversations, each a `mapping` of nodes linked by
`parent`/`children`, with `current_node` naming the leaf the user last saw (edited prompts leave
sibling branches). Our own fields that ChatGPT has no place for ride in each message's `metadata`
under one key of ours, so a round trip through our own export loses nothing while ChatGPT's own
metadata can never be mistaken for ours.

Import is fed untrusted files: every problem becomes a ValueError with one sentence naming it (the
route turns it into a 400), branches are walked without recursion and with a cycle guard, and sizes
are capped.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Message = dict[str, Any]
Meta = Mapping[str, Any]

OURS = "chat_assistant"  # the key of our own fields in a ChatGPT-shaped conversation and message
# Node ids are uuid5 of "conversation id/message id" under this namespace: exporting twice gives the same file.
NODE_NAMESPACE = uuid.UUID("6f1c3e0a-5b7d-4c2e-9a41-3d8e2b7f1c14")
# The message fields besides role, content and timestamp that the store may hold (the contract's list).
EXTRA_FIELDS = (
    "is_scheduled",
    "reply_to",
    "model",
    "reasoning",
    "usage",
    "incomplete",
    "stopped",
    "error",
    "error_code",
    "reminder_id",
    "scheduled_for",
    "generated",
    "late",
    "done_at",
    "reminder_actions",
)
KEPT_CONTENT_TYPES = ("text", "multimodal_text")
PART_PLACEHOLDERS = {
    "image_asset_pointer": "[image]",
    "audio_asset_pointer": "[audio]",
    "real_time_user_audio_video_asset_pointer": "[audio]",
    "video_container_asset_pointer": "[video]",
}
MAX_CONVERSATIONS = 10_000
MAX_NODES = 100_000  # per conversation; ChatGPT's longest threads hold a few thousand
MAX_MESSAGES = 1_000_000  # in one import
MAX_MESSAGE_CHARS = 1_000_000
MAX_TITLE_CHARS = 200
MAX_KEY_CHARS = 200

MARKDOWN_LABELS = {
    "user": "User",
    "assistant": "Assistant",
    "reminder": "Reminder",
    "main": "Main conversation",
    "untitled": "New chat",
    "no_reply": "No reply",
    "incomplete": "incomplete",
    "stopped": "stopped",
}


# --- export -------------------------------------------------------------------------------------


def _moment(timestamp: object) -> datetime | None:
    """An aware datetime from an ISO-8601 string (naive read as UTC), or None."""
    if not isinstance(timestamp, str):
        return None
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _epoch(timestamp: object) -> float | None:
    """Seconds since the epoch, as ChatGPT writes its times."""
    moment = _moment(timestamp)
    return moment.timestamp() if moment is not None else None


def _title(meta: Meta, labels: Mapping[str, str]) -> str:
    """The conversation's title, or the fallback the page shows while it has none."""
    title = meta.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return labels["main"] if meta.get("id") == "main" else labels["untitled"]


def _local_time(timestamp: object) -> str:
    """The time as the user saw it, with its offset: 2026-11-26 09:30:00 +08:00."""
    moment = _moment(timestamp)
    if moment is None:
        return str(timestamp or "")
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def conversation_markdown(meta: Meta, messages: Iterable[Message], labels: Mapping[str, str] = MARKDOWN_LABELS) -> str:
    """One conversation as a Markdown document: its title, then each message under its role and local time.

    Contents are written verbatim: they are Markdown already.
    """
    lines = [f"# {_title(meta, labels)}", ""]
    for message in messages:
        role = labels.get(message.get("role"), str(message.get("role")))
        if message.get("is_scheduled") or message.get("reminder_id"):
            role = f"{role} · {labels['reminder']}"
        notes = [labels[flag] for flag in ("stopped", "incomplete") if message.get(flag)]
        heading = f"**{role}** · {_local_time(message.get('timestamp'))}"
        if notes:
            heading += f" ({', '.join(notes)})"
        content = message.get("content") if isinstance(message.get("content"), str) else ""
        if not content.strip() and message.get("error"):
            content = f"_{labels['no_reply']}: {message['error']}_"
        lines += ["---", "", heading, "", content.rstrip("\n"), ""]
    return "\n".join(lines)


def conversation_json(meta: Meta, messages: Iterable[Message]) -> dict[str, Any]:
    """One conversation as our own JSON: its meta object and its messages, as the API returns them."""
    return {"conversation": dict(meta), "messages": list(messages)}


def download_name(meta: Meta, extension: str) -> str:
    """A safe file name for a conversation's download: its id, which is ASCII by construction."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "", str(meta.get("id", ""))) or "conversation"
    return f"conversation-{safe}.{extension}"


def _node_id(conversation_id: str, message_id: object) -> str:
    return str(uuid.uuid5(NODE_NAMESPACE, f"{conversation_id}/{message_id}"))


def _chatgpt_message(node_id: str, message: Message) -> dict[str, Any]:
    """One of our messages shaped as ChatGPT's, our own fields kept under metadata[OURS]."""
    role = message.get("role")
    ours = {key: value for key, value in message.items() if key not in ("role", "content")}
    metadata: dict[str, Any] = {OURS: ours}
    if isinstance(message.get("model"), str):
        metadata["model_slug"] = message["model"]  # where ChatGPT's readers look for the model
    return {
        "id": node_id,
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": _epoch(message.get("timestamp")),
        "update_time": None,
        "content": {"content_type": "text", "parts": [message.get("content") or ""]},
        "status": "finished_successfully",
        "end_turn": True if role == "assistant" else None,
        "weight": 1.0,
        "metadata": metadata,
        "recipient": "all",
    }


def _chatgpt_conversation(meta: Meta, messages: list[Message]) -> dict[str, Any]:
    """One conversation in ChatGPT's shape: a root node, then one node per message in a single branch."""
    conversation_id = str(meta.get("id", ""))
    root = _node_id(conversation_id, "root")
    mapping: dict[str, dict[str, Any]] = {root: {"id": root, "message": None, "parent": None, "children": []}}
    parent = root
    for number, message in enumerate(messages):
        node = _node_id(conversation_id, message.get("id", f"#{number}"))
        if node in mapping:  # two messages with one id would make a node its own parent
            node = _node_id(conversation_id, f"{message.get('id')}#{number}")
        mapping[parent]["children"].append(node)
        mapping[node] = {"id": node, "message": _chatgpt_message(node, message), "parent": parent, "children": []}
        parent = node
    models = [m["model"] for m in messages if isinstance(m.get("model"), str)]
    return {
        "title": meta.get("title") or "",
        "create_time": _epoch(meta.get("created_at")),
        "update_time": _epoch(meta.get("updated_at")),
        "mapping": mapping,
        "moderation_results": [],
        "current_node": parent,
        "plugin_ids": None,
        "conversation_id": conversation_id,
        "conversation_template_id": None,
        "gizmo_id": None,
        "is_archived": False,
        "safe_urls": [],
        "default_model_slug": models[-1] if models else None,
        "id": conversation_id,
        OURS: {key: meta[key] for key in ("created_at", "updated_at", "pinned") if key in meta},
    }


def chatgpt_export(conversations: Iterable[tuple[Meta, list[Message]]]) -> list[dict[str, Any]]:
    """All conversations as ChatGPT's conversations.json, which other tools (and our import) read."""
    return [_chatgpt_conversation(meta, messages) for meta, messages in conversations]


# --- import -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedConversation:
    """A conversation read from an import, ready for the store; `key` makes importing twice a no-op."""

    key: str
    title: str
    created_at: str
    updated_at: str
    pinned: bool
    messages: list[Message] = field(default_factory=list)  # role, content, timestamp, extras; never an id


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _from_epoch(value: object) -> str | None:
    """ChatGPT's epoch seconds as ISO-8601 in UTC; None when absent or not a sane number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:  # NaN, infinities and numbers past year 9999 all raise here
        return _iso(datetime.fromtimestamp(value, UTC))
    except (OverflowError, OSError, ValueError):
        return None


def _valid_iso(value: object) -> str | None:
    """`value` itself when it is an ISO-8601 timestamp with an offset (ours), else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return value if moment.tzinfo is not None else None


def _name(number: int, conversation: Mapping[str, Any]) -> str:
    """How an error names a conversation: its position, and its title when it has one."""
    title = conversation.get("title")
    if isinstance(title, str) and title.strip():
        return f'conversation {number} ("{title.strip()[:60]}")'
    return f"conversation {number}"


def _newest_leaf(mapping: Mapping[str, Any], name: str) -> str | None:
    """The leaf with the newest message: the best guess at the branch shown when current_node is missing."""
    parents = {parent for node in mapping.values() if isinstance(parent := node.get("parent"), str)}
    leaves = [node_id for node_id in mapping if node_id not in parents]
    if mapping and not leaves:
        raise ValueError(f"The import's {name} has a cycle in its parent links.")

    def created(order_and_id: tuple[int, str]) -> tuple[float, int]:
        order, node_id = order_and_id
        message = mapping[node_id].get("message")
        stamp = message.get("create_time") if isinstance(message, dict) else None
        usable = isinstance(stamp, int | float) and not isinstance(stamp, bool) and -1e12 < stamp < 1e12
        return (float(stamp) if usable else -math.inf, order)

    return max(enumerate(leaves), key=created)[1] if leaves else None


def _branch(mapping: Mapping[str, Any], current: object, name: str) -> list[dict[str, Any]]:
    """The nodes from the root down to `current` (the branch the user last saw), walked without recursion."""
    node_id = current if isinstance(current, str) and current in mapping else _newest_leaf(mapping, name)
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    while isinstance(node_id, str) and node_id in mapping:  # a parent outside the mapping ends the branch
        if node_id in seen:
            raise ValueError(f"The import's {name} has a cycle in its parent links.")
        seen.add(node_id)
        node = mapping[node_id]
        path.append(node)
        node_id = node.get("parent")
    path.reverse()
    return path


def _part_text(part: object) -> str | None:
    """A content part as text: strings as they are, an image or audio pointer as a short placeholder."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        kind = part.get("content_type")
        if kind == "audio_transcription" and isinstance(part.get("text"), str):
            return part["text"]
        return PART_PLACEHOLDERS.get(kind, "[attachment]") if isinstance(kind, str) else "[attachment]"
    return None


def _message(node: Mapping[str, Any], name: str) -> Message | None:
    """The message of a node as the store keeps it, or None when it is not one the user saw."""
    message = node.get("message")
    if not isinstance(message, dict):
        return None  # the root, or a node ChatGPT left without a message
    author = message.get("author")
    role = author.get("role") if isinstance(author, dict) else None
    metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
    content = message.get("content")
    if (
        role not in ("user", "assistant")  # system prompts, tool output
        or metadata.get("is_visually_hidden_from_conversation")
        or message.get("recipient") not in (None, "all")  # the assistant calling a tool, not talking to the user
        or not isinstance(content, dict)
        or content.get("content_type") not in KEPT_CONTENT_TYPES  # code, execution_output, browsing, thoughts…
        or not isinstance(content.get("parts"), list)
    ):
        return None
    pieces = [text for text in map(_part_text, content["parts"]) if text is not None]
    text = "\n".join(piece for piece in pieces if piece)
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"A message in the import's {name} is longer than {MAX_MESSAGE_CHARS:,} characters.")
    ours = metadata.get(OURS) if isinstance(metadata.get(OURS), dict) else None
    if not text.strip() and not ours:  # ours keeps failed turns (empty, with their error), as stored
        return None
    result: Message = {"role": role, "content": text}
    timestamp = (ours and _valid_iso(ours.get("timestamp"))) or _from_epoch(message.get("create_time"))
    if timestamp is not None:
        result["timestamp"] = timestamp
    if ours:
        result.update({key: ours[key] for key in EXTRA_FIELDS if key in ours})
    elif role == "assistant" and isinstance(metadata.get("model_slug"), str):
        result["model"] = metadata["model_slug"]
    result["is_scheduled"] = result.get("is_scheduled") is True
    return result


def _key(conversation: Mapping[str, Any], title: str, messages: list[Message]) -> str:
    """The source's own id when it has one, else a hash of what was imported: the same file, the same key."""
    for name in ("conversation_id", "id"):
        value = conversation.get(name)
        if isinstance(value, str) and 0 < len(value.strip()) <= MAX_KEY_CHARS:
            return value.strip()
    # Role and content only: a time filled in at import ("now", for a file without any) must not change it.
    shape = [title, [[m["role"], m["content"]] for m in messages]]
    digest = hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode())
    return f"sha256:{digest.hexdigest()[:32]}"


def _conversation(number: int, conversation: object) -> ImportedConversation:
    """One ChatGPT-shaped conversation read into an ImportedConversation."""
    if not isinstance(conversation, dict):
        raise ValueError(f"Conversation {number} of the import is not a JSON object.")
    name = _name(number, conversation)
    mapping = conversation.get("mapping")
    if not isinstance(mapping, dict):
        raise ValueError(f"The import's {name} has no 'mapping' object holding its messages.")
    if len(mapping) > MAX_NODES:
        raise ValueError(f"The import's {name} has more than {MAX_NODES:,} messages.")
    if not all(isinstance(node, dict) for node in mapping.values()):
        raise ValueError(f"The import's {name} has a 'mapping' entry that is not a JSON object.")
    messages: list[Message] = []
    for node in _branch(mapping, conversation.get("current_node"), name):
        message = _message(node, name)
        if message is not None:
            messages.append(message)
    ours = conversation.get(OURS) if isinstance(conversation.get(OURS), dict) else {}
    stamps = [m["timestamp"] for m in messages if "timestamp" in m]
    created = (
        _valid_iso(ours.get("created_at"))
        or _from_epoch(conversation.get("create_time"))
        or (stamps[0] if stamps else _iso(datetime.now(UTC)))
    )
    updated = (
        _valid_iso(ours.get("updated_at"))
        or _from_epoch(conversation.get("update_time"))
        or (stamps[-1] if stamps else created)
    )
    previous = created
    for message in messages:  # a message ChatGPT left without a time takes the time of the one before it
        previous = message.setdefault("timestamp", previous)
    raw_title = conversation.get("title")
    title = raw_title.strip()[:MAX_TITLE_CHARS] if isinstance(raw_title, str) else ""
    return ImportedConversation(
        key=_key(conversation, title, messages),
        title=title,
        created_at=created,
        updated_at=updated,
        pinned=ours.get("pinned") is True,
        messages=messages,
    )


def _from_our_json(data: Mapping[str, Any]) -> ImportedConversation:
    """Our own one-conversation JSON export ({"conversation": meta, "messages": [...]}), read back."""
    meta, messages = data["conversation"], data["messages"]
    if not isinstance(meta, dict) or not isinstance(messages, list):
        raise ValueError("The import's 'conversation' must be an object and its 'messages' a list.")
    if len(messages) > MAX_NODES:
        raise ValueError(f"The imported conversation has more than {MAX_NODES:,} messages.")
    # Shaped as one ChatGPT conversation, it goes through the same checks as every other import.
    return _conversation(1, chatgpt_export([(meta, [m if isinstance(m, dict) else {} for m in messages])])[0])


def parse_import(data: object) -> list[ImportedConversation]:
    """The conversations in an import: ChatGPT's conversations.json (ours or ChatGPT's), one conversation
    from it, or our one-conversation JSON export. Bad input raises ValueError with one sentence."""
    if isinstance(data, dict):
        if "mapping" in data:
            return [_conversation(1, data)]
        if "conversation" in data and "messages" in data:
            return [_from_our_json(data)]
        raise ValueError(
            "The import is a JSON object without a 'mapping': expected ChatGPT's conversations.json"
            " (a list of conversations) or one conversation from it."
        )
    if not isinstance(data, list):
        raise ValueError("The import must be a JSON list of conversations, as in ChatGPT's conversations.json.")
    if len(data) > MAX_CONVERSATIONS:
        raise ValueError(f"The import holds more than {MAX_CONVERSATIONS:,} conversations.")
    imported: list[ImportedConversation] = []
    total = 0
    for number, conversation in enumerate(data, 1):
        imported.append(_conversation(number, conversation))
        total += len(imported[-1].messages)
        if total > MAX_MESSAGES:
            raise ValueError(f"The import holds more than {MAX_MESSAGES:,} messages.")
    return imported


def read_import(raw: bytes | str) -> list[ImportedConversation]:
    """parse_import of a file's bytes or text, with undecodable or malformed JSON a ValueError too."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as error:  # a subclass of ValueError, but its message is no sentence
        raise ValueError("The import is not UTF-8 text.") from error
    except RecursionError as error:
        raise ValueError("The import's JSON is nested too deeply.") from error
    except ValueError as error:
        raise ValueError(f"The import is not valid JSON ({error}).") from error
    return parse_import(data)
