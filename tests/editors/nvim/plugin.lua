-- The helper module on the example as shipped (test_bulk_discount_tiers fails): :TracefixRunAll,
-- its status in the statusline, and the failing trace opened from a code action.
local h = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local tracefix = require('tracefix')

h.run(function(outcome)
  vim.cmd('filetype on')
  local tests = h.open('tests/test_pricing.py')
  local results = h.record(h.client(tests), 'tracefix/testResults')
  h.wait('tracefix to be ready', function() return tracefix.status() ~= '' end)
  outcome.ready = tracefix.status()

  vim.cmd('TracefixRunAll')
  h.wait('the run', function() return h.finished(results) end)
  h.wait('a failed status', function() return tracefix.status():find('failed') end)
  outcome.ran = h.finished(results)
  outcome.failing = h.errors(tests)
  outcome.statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str

  vim.api.nvim_win_set_cursor(0, { outcome.failing[1].line + 1, 0 })
  vim.ui.select = function(items, _, on_choice)
    for _, item in ipairs(items) do
      if (item.action or item[2]).title:find('^Show failing trace') then
        return on_choice(item)
      end
    end
    on_choice(nil)
  end
  vim.lsp.buf.code_action()
  h.wait('the trace window', function() return vim.api.nvim_buf_get_name(0):find('^tracefix://trace/') end)
  outcome.trace_name = vim.api.nvim_buf_get_name(0)
  outcome.trace = vim.api.nvim_buf_get_lines(0, 0, -1, true)
end)
