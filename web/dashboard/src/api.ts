// Every call the dashboard makes goes through this client, to ktwin's public HTTP API (the same
// routes a script would use, documented in OpenAPI). A bearer token, once given, is sent on
// every call; a 401 asks the user for one.

import type { ModelDoc } from "./model-types";

/** The store's record of one event (`GET /api/v1/twin-events/...`). */
export interface TwinEvent {
  id: string;
  time: string;
  source: string;
  type: string;
  instanceId: string;
  interfaceId: string;
  eventData: Record<string, unknown>;
}

/** A twin's merged state (`GET /api/v1/twins/{interface}`). */
export interface LatestState {
  interfaceId: string;
  instanceId: string;
  id: string;
  type: string;
  time: string;
  eventCount: number;
  state: Record<string, unknown>;
}

/** A state read through `…/latest` or `…/state?at=T`: the body and the newest event's attributes. */
export interface StateAt {
  state: Record<string, unknown>;
  id: string;
  type: string;
  time: string;
}

/** One relationship of the twin graph. */
export interface GraphRelationship {
  name: string;
  interface: string;
  instance: string;
}

/** One instance of the twin graph (`GET /api/v1/twin-graph`). */
export interface GraphInstance {
  name: string;
  interface: string;
  relationships?: GraphRelationship[];
}

/** The whole twin graph, in the original KTWIN shape. */
export interface GraphDoc {
  twinInstances: GraphInstance[];
}

/** A page of a paged listing and the cursor of the next one. */
export interface Page<T> {
  items: T[];
  next: string | null;
}

/** What a sent command became (`202` of the command route). */
export interface CommandAccepted {
  id: string;
  type: string;
  source: string;
  /** When it was sent: what the twin stores as a result is timed after it. */
  time: string;
}

/** An answer other than 2xx, with the RFC 7807 detail when the server gave one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly path: string,
    detail: string,
  ) {
    super(`${status} ${path}: ${detail}`);
  }
}

const TOKEN_KEY = "ktwin.token";

/** Where the token lives: this browser tab only (sessionStorage), never in a URL. */
export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage disabled: the token lasts as long as the page.
  }
}

export class Api {
  /** Called when the server answers 401: the UI asks for a token. */
  onUnauthorized: (() => void) | null = null;

  constructor(
    readonly base = "",
    public token: string | null = storedToken(),
  ) {}

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const headers: Record<string, string> = { ...extra };
    if (this.token) headers["Authorization"] = `Bearer ${this.token}`;
    return headers;
  }

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const response = await fetch(this.base + path, {
      ...init,
      headers: this.headers((init.headers as Record<string, string>) ?? {}),
    });
    if (response.status === 401) this.onUnauthorized?.();
    return response;
  }

  private async fail(path: string, response: Response): Promise<never> {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = body.detail ?? body.title ?? detail;
    } catch {
      // Not problem+json: the status text says enough.
    }
    throw new ApiError(response.status, path, detail);
  }

  async json<T>(path: string, init?: RequestInit): Promise<T> {
    const response = await this.fetch(path, init);
    if (!response.ok) return this.fail(path, response);
    return (await response.json()) as T;
  }

  async page<T>(path: string): Promise<Page<T>> {
    const response = await this.fetch(path);
    if (!response.ok) return this.fail(path, response);
    return {
      items: (await response.json()) as T[],
      next: response.headers.get("x-next-cursor"),
    };
  }

  graph(): Promise<GraphDoc> {
    return this.json("/api/v1/twin-graph");
  }

  model(): Promise<ModelDoc> {
    return this.json("/api/v1/models");
  }

  /** Latest states of an interface's instances, every page (at most `max`). */
  async states(iface: string, max = 20000): Promise<LatestState[]> {
    const all: LatestState[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page: Page<LatestState> = await this.page(`/api/v1/twins/${enc(iface)}?${query}`);
      all.push(...page.items);
      cursor = page.next;
    } while (cursor && all.length < max);
    return all;
  }

  /** A twin's state now (`at` null) or as of `at`, or null when it had none yet. */
  async stateAt(iface: string, instance: string, at: Date | null): Promise<StateAt | null> {
    const path = `/api/v1/twin-events/${enc(iface)}/${enc(instance)}`;
    const url = at ? `${path}/state?at=${encodeURIComponent(at.toISOString())}` : `${path}/latest`;
    const response = await this.fetch(url);
    if (response.status === 404) {
      // 404 is "no state" only when the server says so; an unknown route is an error.
      const body = await response.json().catch(() => ({}));
      if (typeof body.detail === "string" && body.detail.startsWith("no event")) return null;
      return this.fail(url, new Response(JSON.stringify(body), { status: 404 }));
    }
    if (!response.ok) return this.fail(url, response);
    return {
      state: (await response.json()) as Record<string, unknown>,
      id: response.headers.get("ce-id") ?? "",
      type: response.headers.get("ce-type") ?? "",
      time: response.headers.get("ce-time") ?? "",
    };
  }

  /** One page of a twin's history, newest first. */
  history(
    iface: string,
    instance: string,
    window: { since?: Date; until?: Date; limit?: number; cursor?: string | null },
  ): Promise<Page<TwinEvent>> {
    const query = new URLSearchParams();
    if (window.since) query.set("since", window.since.toISOString());
    if (window.until) query.set("until", window.until.toISOString());
    query.set("limit", String(window.limit ?? 100));
    if (window.cursor) query.set("cursor", window.cursor);
    return this.page(`/api/v1/twin-events/${enc(iface)}/${enc(instance)}?${query}`);
  }

  /**
   * Sends `command` to a twin as its command event; the server checks the payload against the
   * command's DTDL request schema (400 names the field, its value and what was expected).
   */
  sendCommand(
    iface: string,
    instance: string,
    command: string,
    payload: unknown,
  ): Promise<CommandAccepted> {
    return this.json(
      `/api/v1/commands/${enc(iface)}/${enc(instance)}/${enc(command)}`,
      {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload ?? null),
      },
    );
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}
