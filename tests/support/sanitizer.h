// Test support: whether this build runs under ThreadSanitizer (loops shrink, fork tests skip).
#pragma once

namespace hakmem_test {

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#else
inline constexpr bool kTsan = false;
#endif

}  // namespace hakmem_test
