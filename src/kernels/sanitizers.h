// Which sanitizer this translation unit is built under (clang's __has_feature, gcc's __SANITIZE_*__).
#pragma once

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MLXGP_TSAN 1
#endif
#endif
#if !defined(MLXGP_TSAN) && defined(__SANITIZE_THREAD__)
#define MLXGP_TSAN 1
#endif
#ifndef MLXGP_TSAN
#define MLXGP_TSAN 0
#endif
