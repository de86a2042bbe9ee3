// The twin panel's commands tab: a form per command, generated from its DTDL request schema;
// sending posts it to the command API (which checks it against the schema again and publishes
// the command event), then watches the twin's history for the state its service stores after
// it. The store keeps states, not commands: what a command changed is what is stored.

import type { CommandAccepted } from "./api";
import { editorFor } from "./command-form";
import { h, formatTime, shortJson } from "./dom";
import type { Content, ModelInterface } from "./model-types";
import { schemaLabel, text } from "./model-types";
import type { TwinEvent } from "./api";
import type { PanelContext } from "./panel";
import { describe } from "./panel";

type CommandContent = Extract<Content, { kind: "Command" }>;

/** How long to look for the stored command event. */
const STORED_TIMEOUT_MS = 15_000;

export async function commandTab(ctx: PanelContext, iface: string, twin: string, model: ModelInterface | undefined): Promise<HTMLElement> {
  if (!model) return h("p", {}, `The model of ${iface} is not available, so its commands are unknown.`);
  const commands = model.contents.filter((c): c is CommandContent => c.kind === "Command");
  if (commands.length === 0) return h("p", {}, `${iface} declares no command.`);
  return h("div", { id: "twin-commands" }, commands.map((command) => commandForm(ctx, iface, twin, command)));
}

function commandForm(ctx: PanelContext, iface: string, twin: string, command: CommandContent): HTMLElement {
  const editor = command.request
    ? editorFor(command.request.schema, text(command.request.displayName) ?? command.request.name, command.request.name)
    : null;
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  // `novalidate`: the editors' own checks name the field and the expectation, where the
  // browser's would block the submit with a tooltip.
  const form = h("form", { class: "command", "data-command": command.name, novalidate: true },
    h("h3", {}, command.name),
    text(command.description) ? h("p", {}, text(command.description)!) : null,
    command.request ? h("p", { class: "note" }, `Request ${command.request.name}: ${schemaLabel(command.request.schema)}`) : h("p", { class: "note" }, "No request payload."),
    editor?.element ?? null,
    h("button", { type: "submit" }, `Send ${command.name}`),
    status);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const parsed = editor ? editor.read() : { ok: true as const, value: null };
    if (!parsed.ok) {
      status.textContent = parsed.error;
      status.className = "status error";
      return;
    }
    void send(ctx, iface, twin, command.name, parsed.value ?? null, status);
  });
  return form;
}

async function send(ctx: PanelContext, iface: string, twin: string, command: string, payload: unknown, status: HTMLElement): Promise<void> {
  status.className = "status";
  delete status.dataset.stored;
  status.textContent = "Sending…";
  let accepted: CommandAccepted;
  try {
    accepted = await ctx.api.sendCommand(iface, twin, command, payload);
  } catch (err) {
    status.className = "status error";
    status.textContent = describe(err);
    return;
  }
  status.dataset.eventId = accepted.id;
  status.dataset.sentAt = accepted.time;
  status.textContent = `Sent as event ${accepted.id} (${accepted.type}) at ${formatTime(accepted.time)}; waiting for ${twin}'s service to store its state…`;
  const stored = await storedAfter(ctx, iface, twin, accepted, status);
  status.dataset.stored = String(stored !== null);
  if (stored) {
    status.dataset.storedEventId = stored.id;
    status.className = "status ok";
    status.textContent = `Stored: ${twin}'s state at ${formatTime(stored.time)} (event ${stored.id}), the first stored after command event ${accepted.id}: ${shortJson(stored.eventData)}`;
  } else {
    status.className = "status";
    status.textContent = `Sent as event ${accepted.id} at ${formatTime(accepted.time)}; ${twin} stored no state in the ${STORED_TIMEOUT_MS / 1000} s after it (its service may change other twins: see Live).`;
  }
}

/** The first state the twin stored at or after the command's time, or null after the timeout. */
async function storedAfter(ctx: PanelContext, iface: string, twin: string, accepted: CommandAccepted, status: HTMLElement): Promise<TwinEvent | null> {
  const deadline = Date.now() + STORED_TIMEOUT_MS;
  const sent = new Date(accepted.time);
  // Stop when the panel shows something else.
  while (Date.now() < deadline && status.isConnected) {
    const page = await ctx.api.history(iface, twin, { since: sent, limit: 100 });
    const stored = page.items
      .filter((e) => e.type.startsWith("ktwin.store.") && new Date(e.time) >= sent)
      .sort((a, b) => a.time.localeCompare(b.time));
    if (stored.length > 0) return stored[0];
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return null;
}
