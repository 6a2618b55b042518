-- The helper module on the example as shipped (test_bulk_discount_tiers fails): :TracefixRunAll
-- and its status in the statusline, the failing trace opened from a code action, and a review
-- comment added with :TracefixAddReview, then resolved from a code action.
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
  outcome.failing = h.diagnostics(tests, 'tracefix')
  outcome.virtual_text = vim.diagnostic.config(nil, vim.lsp.diagnostic.get_namespace(h.client(tests).id)).virtual_text
  outcome.statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str

  vim.api.nvim_win_set_cursor(0, { outcome.failing[1].line + 1, 0 })
  outcome.actions = h.code_action('^Show failing trace')
  h.wait('the trace window', function() return vim.api.nvim_buf_get_name(0):find('^tracefix://trace/') end)
  outcome.trace_name = vim.api.nvim_buf_get_name(0)
  outcome.trace = vim.api.nvim_buf_get_lines(0, 0, -1, true)
  vim.cmd('close')

  local code = h.open('shop/pricing.py')
  vim.api.nvim_win_set_cursor(0, { 13, 0 }) -- if quantity > 50:
  vim.ui.input = function(_, on_confirm)
    on_confirm('from 50, as the docstring says')
  end
  vim.cmd('TracefixAddReview')
  h.wait('the review comment', function() return #h.diagnostics(code, 'tracefix-review') > 0 end)
  outcome.review = h.diagnostics(code, 'tracefix-review')
  outcome.review_actions = h.code_action('^Resolve this review comment')
  h.wait('the review to be resolved', function() return #h.diagnostics(code, 'tracefix-review') == 0 end)
end)
