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
  o.str(" (limit ").size(s.cache_limit).str(": cap ").size(s.cache_cap).str(", max ").size(s.cache_max);
  o.str(", grown ").dec(s.cache_grows).str("x, shrunk ").dec(s.cache_shrinks).str("x), evictions ");
  o.dec(s.cache_evictions).str(", bypassed ").dec(s.cache_bypass).ch('\n');
  o.str("  slots     hits ").dec(s.slot_hits).str(", held ").size(s.slot_bytes).str(" (one block per thread, at most ");
  o.size(s.slot_max).str(")\n");
  o.str("  release   blocks ").dec(s.release_blocks).str(", ").size(s.release_bytes).str(", flushes ");
  o.dec(s.release_flushes).str(", munmap calls ").dec(s.unmap_calls).str(", syscalls saved ");
  o.dec(s.syscalls_saved).str(", pending ").size(s.pending_bytes).str(" (batch ").size(s.batch_bytes);
  o.str("), purged ").size(s.purged_bytes).str(" of empty spans in ").dec(s.purge_calls).str(" calls\n");
  o.str("  memory    mapped ").size(s.mapped_bytes).str(" = pool spans ").size(s.pool_span_bytes);
  o.str(" + map live ").size(s.map_live_bytes).str(" + cached ").size(s.cache_bytes).str(" + slots ");
  o.size(s.slot_bytes).str(" + pending ");
  o.size(s.pending_bytes).str(" + metadata ").size(s.metadata_bytes).ch('\n');
  if (s.learning) {
    const LearnerCounters& c = s.learner;
    o.str("  learner   ").str(lifecycle_name(s.lifecycle));
    if (s.lifecycle != Lifecycle::kLearn)
      o.str(" on strategy ").dec(s.frozen).str(" (").size(kStrategyThresholds[s.frozen]).ch(')');
    o.str("; ").dec(c.epochs).str(" epochs (").dec(c.scored_epochs).str(" scored), ").dec(c.matches).str(" matches\n");
    o.str("            freezes ")
        .dec(c.freezes)
        .str(", relearns ")
        .dec(c.relearns)
        .str(" (cost ")
        .dec(c.relearns_by_cost);
    o.str(", size shift ").dec(c.relearns_by_shift).str("), canaries ").dec(c.canaries).str(" (adopted ");
    o.dec(c.canary_adoptions).str(", rolled back ").dec(c.canary_rollbacks).str("), ended early ");
    o.dec(c.early_ends).ch('\n');
    o.str("  rank  strategy  threshold     rating      W/L/D  epochs\n");
    for (size_t i = 0; i < kLearnableStrategies; ++i) {
      const StatsSnapshot::BoardRow& r = s.board[i];
      o.pad(6, digits_of(i + 1)).dec(i + 1).pad(10, digits_of(r.strategy)).dec(r.strategy).str("  ");
      o.size(r.threshold).str("  ");
      o.fixed(r.rating, 1).str("  ").dec(r.wins).ch('/').dec(r.losses).ch('/').dec(r.draws);
      o.str("  ").dec(r.epochs);
      if (r.strategy == s.strategy) o.str("  <- in force");
      o.ch('\n');
    }
  }
  if (s.site_count > 0) {
    o.str("  top sites of large requests\n");
    for (size_t i = 0; i < s.site_count; ++i) {
      o.str("    ").dec(s.sites[i].requests).str(" requests, ").size(s.sites[i].bytes).str(", at ");
      format_site(o, s.sites[i].site);
      o.ch('\n');
    }
    if (s.site_other_requests != 0)
      o.str("    ").dec(s.site_other_requests).str(" requests from sites past the table\n");
  }
  if (s.paranoid) {
    o.str("  paranoid  quarantine ").size(s.quarantine_bytes).str(" in ").dec(s.quarantine_blocks).str(" blocks (cap ");
    o.size(s.quarantine_cap).str("), withheld ").size(s.withheld_bytes).str(", zero-size live ").dec(s.zero_live);
    if (s.protect_failures != 0) o.str(", mprotect failures ").dec(s.protect_failures);
    o.ch('\n');
  }
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
  kv("live_bytes", s.map_live_bytes);
  kv("slot_hits", s.slot_hits);
  kv("slot_bytes", s.slot_bytes);
  kv("slot_max", s.slot_max, true);
  o.str("},\"bigcache\":{");
  kv("hits", s.cache_hits);
  kv("misses", s.cache_misses);
  kv("puts", s.cache_puts);
  kv("evictions", s.cache_evictions);
  kv("bypassed", s.cache_bypass);
  kv("blocks", s.cache_blocks);
  kv("bytes", s.cache_bytes);
  kv("cap", s.cache_cap);
  kv("limit", s.cache_limit);
  kv("max", s.cache_max);
  kv("grows", s.cache_grows);
  kv("shrinks", s.cache_shrinks, true);
  o.str("},\"release\":{");
  kv("blocks", s.release_blocks);
  kv("bytes", s.release_bytes);
  kv("flushes", s.release_flushes);
  kv("munmap_calls", s.unmap_calls);
  kv("syscalls_saved", s.syscalls_saved);
  kv("purge_calls", s.purge_calls);
  kv("purged_bytes", s.purged_bytes);
  kv("pending_bytes", s.pending_bytes);
  kv("batch_bytes", s.batch_bytes, true);
  o.str("},\"memory\":{");
  kv("mapped", s.mapped_bytes);
  kv("metadata", s.metadata_bytes, true);
  o.str("},\"learner\":{");
  if (s.learning) {
    const LearnerCounters& c = s.learner;
    o.str("\"state\":\"").str(lifecycle_name(s.lifecycle)).str("\",");
    kv("frozen", s.frozen);
    kv("epochs", c.epochs);
    kv("scored_epochs", c.scored_epochs);
    kv("matches", c.matches);
    kv("freezes", c.freezes);
    kv("relearns", c.relearns);
    kv("relearns_by_cost", c.relearns_by_cost);
    kv("relearns_by_shift", c.relearns_by_shift);
    kv("canaries", c.canaries);
    kv("canary_adoptions", c.canary_adoptions);
    kv("canary_rollbacks", c.canary_rollbacks);
    kv("early_ends", c.early_ends);
    kv("learning_work", c.learning_work);
    o.str("\"leaderboard\":[");
    for (size_t i = 0; i < kLearnableStrategies; ++i) {
      const StatsSnapshot::BoardRow& r = s.board[i];
      o.str(i == 0 ? "{" : ",{");
      kv("rank", i + 1);
      kv("strategy", r.strategy);
      kv("threshold", r.threshold);
      o.str("\"rating\":").fixed(r.rating, 1).ch(',');
      kv("wins", r.wins);
      kv("losses", r.losses);
      kv("draws", r.draws);
      kv("epochs", r.epochs);
      o.str("\"active\":").str(r.strategy == s.strategy ? "true" : "false").ch('}');
    }
    o.str("]");
  } else {
    o.str("\"state\":\"off\"");
  }
  o.str("},\"sites\":[");
  for (size_t i = 0; i < s.site_count; ++i) {
    o.str(i == 0 ? "{" : ",{").str("\"site\":\"").hex(s.sites[i].site).str("\",");
    kv("requests", s.sites[i].requests);
    kv("bytes", s.sites[i].bytes, true);
    o.ch('}');
  }
  o.str("],\"sites_other_requests\":").dec(s.site_other_requests);
  o.str(",\"hardening\":{\"mode\":\"").str(s.paranoid ? "paranoid" : "default").str("\",");
  kv("quarantine_bytes", s.quarantine_bytes);
  kv("quarantine_blocks", s.quarantine_blocks);
  kv("quarantine_cap", s.quarantine_cap);
  kv("withheld_bytes", s.withheld_bytes);
  kv("zero_live", s.zero_live);
  kv("protect_failures", s.protect_failures, true);
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
