# pair.cmake: `cmake --build <dir> --target bench_pair` runs bench/bench_pair.sh with this build's
# specreason and sr-train: base, small and SpecReason side by side on the trained pair's held-out
# problems (training the pair first if it is not cached), JSON in <dir>/bench_pair.json.
if(TARGET sr-train)
    add_custom_target(bench_pair
        COMMAND ${CMAKE_COMMAND} -E env SR_BUILD_DIR=${CMAKE_BINARY_DIR}
                bash ${CMAKE_CURRENT_LIST_DIR}/bench_pair.sh ${CMAKE_BINARY_DIR}/bench_pair.json
        DEPENDS specreason-cli sr-train
        USES_TERMINAL
        COMMENT "bench_pair: trained small/base pair, base vs small vs SpecReason")
endif()
