// Timings the dashboard measures of itself, read by the browser benchmark
// (`window.ktwinDashboard.metrics`); nothing asserts on them.

export const metrics = {
  /** From navigation start to the first drawn graph, in ms. */
  firstRenderMs: null as number | null,
  /** The last search's time to compute and list suggestions, in ms. */
  lastSearchMs: null as number | null,
  /** Twins in the loaded graph. */
  twins: 0,
};
