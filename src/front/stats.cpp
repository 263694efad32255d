// Renders a StatsSnapshot as a table or as JSON, without allocating.
#include "front/stats.h"

namespace hakmem {

namespace {

void row(Out& o, const char* name, uint64_t allocs, uint64_t frees, uint64_t live_bytes) {
  o.str("  ").str(name).pad(10, strlen(name));
  o.pad(14, digits_of(allocs)).dec(allocs);
  o.pad(14, digits_of(frees)).dec(frees);
  o.str("    ").size(live_bytes).ch('\n');
}

uint64_t percent_x10(uint64_t part, uint64_t whole) { return whole == 0 ? 0 : part * 1000 / whole; }

}  // namespace

void print_stats_table(const StatsSnapshot& s, WriteFn fn, void* arg) {
  Out o(fn, arg);
  o.str("hakmem stats\n");
  o.str("  selector  mode ").str(s.mode == kModeLearn ? "learn" : "fixed").str(", strategy ").dec(s.strategy);
  o.str(", threshold ").size(s.threshold).ch('\n');
  o.str("  method          allocs         frees    live\n");
  row(o, "pool", s.pool_allocs, s.pool_frees, s.pool_live_bytes);
  row(o, "map", s.map_allocs, s.map_frees, s.map_live_bytes);
  o.str("  pool      ").dec(s.pool_spans).str(" spans, ").size(s.pool_span_bytes).str(", remote frees ");
  o.dec(s.remote_frees).ch('\n');
  const uint64_t lookups = s.cache_hits + s.cache_misses;
  const uint64_t hr = percent_x10(s.cache_hits, lookups);
  o.str("  bigcache  hits ").dec(s.cache_hits).str(", misses ").dec(s.cache_misses).str(", hit rate ");
  o.dec(hr / 10).ch('.').dec(hr % 10).str("%, held ").dec(s.cache_blocks).str(" blocks / ").size(s.cache_bytes);
  o.str(" (cap ").size(s.cache_cap).str("), evictions ").dec(s.cache_evictions).str(", bypassed ");
  o.dec(s.cache_bypass).ch('\n');
  o.str("  release   blocks ").dec(s.release_blocks).str(", ").size(s.release_bytes).str(", flushes ");
  o.dec(s.release_flushes).str(", munmap calls ").dec(s.unmap_calls).str(", syscalls saved ");
  o.dec(s.syscalls_saved).str(", pending ").size(s.pending_bytes).str(" (batch ").size(s.batch_bytes).str(")\n");
  o.str("  memory    mapped ").size(s.mapped_bytes).str(" = pool spans ").size(s.pool_span_bytes);
  o.str(" + map live ").size(s.map_live_bytes).str(" + cached ").size(s.cache_bytes).str(" + pending ");
  o.size(s.pending_bytes).str(" + metadata ").size(s.metadata_bytes).ch('\n');
  o.str("  errors    ").dec(s.errors_total);
  for (size_t i = 1; i < static_cast<size_t>(Verdict::kCount); ++i) {
    if (s.errors[i] == 0) continue;
    o.str(", ").str(verdict_name(static_cast<Verdict>(i))).str(": ").dec(s.errors[i]);
  }
  o.ch('\n');
}

void print_stats_json(const StatsSnapshot& s, WriteFn fn, void* arg) {
  Out o(fn, arg);
  auto kv = [&](const char* k, uint64_t v, bool last = false) {
    o.ch('"').str(k).str("\":").dec(v);
    if (!last) o.ch(',');
  };
  o.str("{\"hakmem\":{\"selector\":{\"mode\":\"").str(s.mode == kModeLearn ? "learn" : "fixed").str("\",");
  kv("strategy", s.strategy);
  kv("threshold", s.threshold, true);
  o.str("},\"pool\":{");
  kv("allocs", s.pool_allocs);
  kv("frees", s.pool_frees);
  kv("live_bytes", s.pool_live_bytes);
  kv("spans", s.pool_spans);
  kv("span_bytes", s.pool_span_bytes);
  kv("remote_frees", s.remote_frees, true);
  o.str("},\"map\":{");
  kv("allocs", s.map_allocs);
  kv("frees", s.map_frees);
  kv("live_bytes", s.map_live_bytes, true);
  o.str("},\"bigcache\":{");
  kv("hits", s.cache_hits);
  kv("misses", s.cache_misses);
  kv("puts", s.cache_puts);
  kv("evictions", s.cache_evictions);
  kv("bypassed", s.cache_bypass);
  kv("blocks", s.cache_blocks);
  kv("bytes", s.cache_bytes);
  kv("cap", s.cache_cap, true);
  o.str("},\"release\":{");
  kv("blocks", s.release_blocks);
  kv("bytes", s.release_bytes);
  kv("flushes", s.release_flushes);
  kv("munmap_calls", s.unmap_calls);
  kv("syscalls_saved", s.syscalls_saved);
  kv("pending_bytes", s.pending_bytes);
  kv("batch_bytes", s.batch_bytes, true);
  o.str("},\"memory\":{");
  kv("mapped", s.mapped_bytes);
  kv("metadata", s.metadata_bytes, true);
  o.str("},\"errors\":{");
  kv("total", s.errors_total);
  for (size_t i = 1; i < static_cast<size_t>(Verdict::kCount); ++i) {
    o.ch('"');
    for (const char* n = verdict_name(static_cast<Verdict>(i)); *n != '\0'; ++n) o.ch(*n == ' ' ? '_' : *n);
    o.str("\":").dec(s.errors[i]);
    if (i + 1 < static_cast<size_t>(Verdict::kCount)) o.ch(',');
  }
  o.str("}}}\n");
}

}  // namespace hakmem
