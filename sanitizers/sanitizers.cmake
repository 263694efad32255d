# The runtime options every test of a sanitizer build runs with, wired in one place: tests/
# passes ${HAKMEM_SANITIZER_ENV} as each test's ENVIRONMENT (props/ and fuzz/ may do the same).
# A suppression file is used only if it exists, and every entry in it carries its justification.
set(HAKMEM_SANITIZER_ENV "")
set(_supp ${PROJECT_SOURCE_DIR}/sanitizers)
if(HAKMEM_SANITIZE STREQUAL "address")
  # halt at the first report (UBSan is already fatal: -fno-sanitize-recover); stricter checks
  # than the defaults that cost the suite little: stack use after return, init order, strings.
  set(_asan "halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1:strict_string_checks=1")
  set(_ubsan "halt_on_error=1:print_stacktrace=1")
  if(EXISTS ${_supp}/asan.supp)
    string(APPEND _asan ":suppressions=${_supp}/asan.supp")
  endif()
  if(EXISTS ${_supp}/lsan.supp)
    list(APPEND HAKMEM_SANITIZER_ENV "LSAN_OPTIONS=suppressions=${_supp}/lsan.supp")
  endif()
  if(EXISTS ${_supp}/ubsan.supp)
    string(APPEND _ubsan ":suppressions=${_supp}/ubsan.supp")
  endif()
  list(APPEND HAKMEM_SANITIZER_ENV "ASAN_OPTIONS=${_asan}" "UBSAN_OPTIONS=${_ubsan}")
elseif(HAKMEM_SANITIZE STREQUAL "thread")
  set(_tsan "halt_on_error=1:second_deadlock_stack=1")
  if(EXISTS ${_supp}/tsan.supp)
    string(APPEND _tsan ":suppressions=${_supp}/tsan.supp")
  endif()
  list(APPEND HAKMEM_SANITIZER_ENV "TSAN_OPTIONS=${_tsan}")
endif()
