// A server-sent events client over fetch, so that the bearer token travels in the
// `Authorization` header (EventSource cannot send headers). Pausing closes the connection and
// keeps the last event id; resuming reconnects with `Last-Event-ID` and the server replays
// what was published meanwhile, so no event is lost while paused.

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** Splits an SSE byte stream (decoded to text) into messages, across chunk boundaries. */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private id: string | null = null;

  /** Feeds a chunk; returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    let newline: number;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith("\r\n", newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const message = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      return message;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\u0000")) this.id = value;
    return null;
  }
}

export type StreamStatus = "connecting" | "open" | "paused" | "error";

/** A resumable subscription to an SSE endpoint. */
export class EventStream {
  lastEventId: string | null = null;
  status: StreamStatus = "paused";
  private abort: AbortController | null = null;
  private retryMs = 1000;

  constructor(
    private readonly url: string,
    private readonly headers: () => Record<string, string>,
    private readonly onMessage: (message: SseMessage) => void,
    private readonly onStatus: (status: StreamStatus, detail?: string) => void,
  ) {}

  start(): void {
    if (this.abort) return;
    this.abort = new AbortController();
    void this.run(this.abort.signal);
  }

  /** Stops receiving; [`start`] resumes after the last event received. */
  pause(): void {
    this.abort?.abort();
    this.abort = null;
    this.setStatus("paused");
  }

  private setStatus(status: StreamStatus, detail?: string): void {
    this.status = status;
    this.onStatus(status, detail);
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.connect(signal);
      } catch (err) {
        if (signal.aborted) return;
        this.setStatus("error", (err as Error).message);
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }

  private async connect(signal: AbortSignal): Promise<void> {
    this.setStatus("connecting");
    const headers: Record<string, string> = { Accept: "text/event-stream", ...this.headers() };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    const response = await fetch(this.url, { headers, signal, cache: "no-store" });
    if (!response.ok || !response.body) throw new Error(`${response.status} ${response.statusText}`);
    this.setStatus("open");
    const parser = new SseParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the stream ended");
      for (const message of parser.push(value)) {
        if (message.id !== null) this.lastEventId = message.id;
        this.onMessage(message);
      }
    }
  }
}
