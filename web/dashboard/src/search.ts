// Search by name with suggestions: an ARIA combobox (WAI-ARIA APG "combobox with listbox
// popup"). Typing lists matching twins; Up/Down choose, Enter opens, Escape closes.

import { h } from "./dom";
import { metrics } from "./metrics";
import type { TwinGraph } from "./twin-graph";

export class SearchBox {
  readonly element: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly list: HTMLElement;
  private suggestions: string[] = [];
  private active = -1;

  constructor(
    private readonly graph: () => TwinGraph | null,
    private readonly open: (twin: string) => void,
  ) {
    this.input = h("input", {
      id: "search", type: "search", role: "combobox", "aria-autocomplete": "list",
      "aria-expanded": "false", "aria-controls": "search-suggestions", autocomplete: "off",
      placeholder: "Search twins by name", spellcheck: "false",
    });
    this.list = h("ul", { id: "search-suggestions", role: "listbox", "aria-label": "Matching twins", class: "suggestions", hidden: true });
    this.element = h("div", { class: "search" }, h("label", { for: "search", class: "visually-hidden" }, "Search twins"), this.input, this.list);
    this.input.addEventListener("input", () => this.update());
    this.input.addEventListener("keydown", (event) => this.key(event));
    this.input.addEventListener("blur", () => setTimeout(() => this.close(), 150));
    this.list.addEventListener("mousedown", (event) => {
      const option = (event.target as HTMLElement).closest<HTMLElement>("[role=option]");
      if (option) this.choose(option.dataset.name!);
    });
  }

  private update(): void {
    const graph = this.graph();
    if (!graph) return;
    const started = performance.now();
    this.suggestions = graph.search(this.input.value, 12);
    this.active = this.suggestions.length > 0 ? 0 : -1;
    this.render(graph);
    metrics.lastSearchMs = performance.now() - started;
  }

  private render(graph: TwinGraph): void {
    this.list.replaceChildren(
      ...this.suggestions.map((name, i) =>
        h("li", { role: "option", id: `suggestion-${i}`, "data-name": name, "aria-selected": String(i === this.active), class: "suggestion" },
          h("span", { class: "name" }, name),
          h("span", { class: "iface" }, graph.twins.get(name)!.interface)),
      ),
    );
    if (this.input.value.trim() && this.suggestions.length === 0) {
      this.list.append(h("li", { class: "empty", "aria-disabled": "true" }, "No twin matches"));
    }
    const open = this.input.value.trim() !== "";
    this.list.hidden = !open;
    this.input.setAttribute("aria-expanded", String(open));
    if (this.active >= 0) this.input.setAttribute("aria-activedescendant", `suggestion-${this.active}`);
    else this.input.removeAttribute("aria-activedescendant");
  }

  private key(event: KeyboardEvent): void {
    const graph = this.graph();
    if (!graph) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (this.suggestions.length === 0) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.active = (this.active + step + this.suggestions.length) % this.suggestions.length;
      this.render(graph);
    } else if (event.key === "Enter") {
      const name = this.suggestions[this.active] ?? graph.search(this.input.value, 1)[0];
      if (name) this.choose(name);
    } else if (event.key === "Escape") {
      this.close();
    } else {
      return;
    }
    event.preventDefault();
  }

  private choose(name: string): void {
    this.input.value = name;
    this.close();
    this.open(name);
  }

  private close(): void {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
    this.input.removeAttribute("aria-activedescendant");
  }

  focus(): void {
    this.input.focus();
  }
}
