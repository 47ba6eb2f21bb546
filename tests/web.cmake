# web.cmake: the live page of specreason-server (web/, embedded) in a real headless Chromium,
# driven by tests/test_web.py over the DevTools protocol (tests/cdp.py, standard library only).
# live: the real server with the biased generated models; render: the page on a replayed stream.
# Screenshots are left in ${CMAKE_CURRENT_BINARY_DIR}/web_<part>/. Skipped (exit 77) only when no
# Chromium is installed (scripts/setup.sh installs Debian's chromium).
if(TARGET specreason-server)
    foreach(part live render)
        add_test(NAME test_web_${part}
            COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/test_web.py ${part} $<TARGET_FILE:specreason-server>
                    ${SR_MODEL_DIR}/small-b.gguf ${SR_MODEL_DIR}/base-b.gguf ${CMAKE_SOURCE_DIR}/web
                    ${CMAKE_CURRENT_BINARY_DIR}/web_${part})
        set_tests_properties(test_web_${part} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
        if(part STREQUAL "live")
            set_tests_properties(test_web_${part} PROPERTIES LABELS model FIXTURES_REQUIRED models_biased)
        else()
            set_tests_properties(test_web_${part} PROPERTIES LABELS unit)
        endif()
    endforeach()
endif()
