# web.cmake: the live page (web/, embedded) in a real headless Chromium, driven by
# tests/test_web.py over the DevTools protocol (tests/cdp.py, standard library only).
# render: the page on a replayed stream (needs no server); live: the real specreason-server with
# the biased generated models (when that target exists). Screenshots are left in
# ${CMAKE_CURRENT_BINARY_DIR}/web_<part>/. Skipped (exit 77) only when no Chromium is installed
# (scripts/setup.sh installs Debian's chromium).
set(SR_WEB_PARTS render)
if(TARGET specreason-server)
    list(APPEND SR_WEB_PARTS live)
endif()
foreach(part ${SR_WEB_PARTS})
    if(part STREQUAL "live")
        set(server $<TARGET_FILE:specreason-server>)
    else()
        set(server none)
    endif()
    add_test(NAME test_web_${part}
        COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_web.py ${part} ${server}
                ${SR_MODEL_DIR}/small-b.gguf ${SR_MODEL_DIR}/base-b.gguf ${CMAKE_SOURCE_DIR}/web
                ${CMAKE_CURRENT_BINARY_DIR}/web_${part})
    set_tests_properties(test_web_${part} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
    if(part STREQUAL "live")
        set_tests_properties(test_web_${part} PROPERTIES LABELS model FIXTURES_REQUIRED models_biased)
    else()
        set_tests_properties(test_web_${part} PROPERTIES LABELS unit)
    endif()
endforeach()
