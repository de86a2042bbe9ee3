// The twin panel's commands tab: a form per command, generated from its DTDL request schema;
// sending posts it to the command API, then watches the twin's history until the command's
// event is stored.

import type { CommandAccepted } from "./api";
import { editorFor } from "./command-form";
import { h, formatTime } from "./dom";
import type { Content, ModelInterface } from "./model-types";
import { schemaLabel, text } from "./model-types";
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
  const form = h("form", { class: "command", "data-command": command.name },
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
  status.textContent = "Sending…";
  let accepted: CommandAccepted;
  try {
    accepted = await ctx.api.sendCommand(iface, twin, command, payload);
  } catch (err) {
    status.className = "status error";
    status.textContent = describe(err);
    return;
  }
  status.textContent = `Sent as event ${accepted.id} (${accepted.type}); waiting for the store…`;
  const stored = await waitStored(ctx, iface, twin, accepted);
  status.dataset.stored = String(stored);
  status.textContent = stored
    ? `Stored: event ${accepted.id} (${accepted.type}) at ${formatTime(accepted.time)} is in ${twin}'s history.`
    : `Sent as event ${accepted.id}, but the store has not recorded it after ${STORED_TIMEOUT_MS / 1000} s.`;
  status.className = stored ? "status ok" : "status error";
}

async function waitStored(ctx: PanelContext, iface: string, twin: string, accepted: CommandAccepted): Promise<boolean> {
  const deadline = Date.now() + STORED_TIMEOUT_MS;
  const time = new Date(accepted.time);
  while (Date.now() < deadline) {
    const page = await ctx.api.history(iface, twin, { since: time, until: time, limit: 100 });
    if (page.items.some((e) => e.id === accepted.id)) return true;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return false;
}
