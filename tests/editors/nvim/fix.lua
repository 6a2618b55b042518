-- A fix through the client, on the example as shipped (test_bulk_discount_tiers fails) with a
-- scripted model: "Fix ... with tracefix" from the code actions, then the verified edit applied
-- by Neovim to the buffer, saved, and the failure gone.
local h = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local tracefix = require('tracefix')

h.run(function(outcome)
  vim.cmd('filetype on')
  local code = h.open('shop/pricing.py')
  local client = h.client(code)
  local shown = h.record(client, 'window/showMessage')
  h.wait('tracefix to be ready', function() return tracefix.status() ~= '' end)

  vim.cmd('TracefixRunAll')
  h.wait('a failed status', function() return tracefix.status():find('failed') end)
  h.wait('the failure traced to the line that made the wrong value', function() return h.blamed_on(code, 15) end)
  outcome.failing = h.diagnostics(code, 'tracefix')
  vim.api.nvim_win_set_cursor(0, { outcome.failing[1].line + 1, 0 })
  outcome.actions = h.code_action('^Fix ')
  h.wait('a verified fix', function() return #shown > 0 end)
  outcome.shown = shown
  outcome.apply_actions = h.code_action('^Apply verified fix')
  h.wait('the edit', function() return vim.bo[code].modified end)
  outcome.fixed = vim.api.nvim_buf_get_lines(code, 0, -1, true)

  vim.cmd('write')
  h.wait('the failure to clear', function() return #h.diagnostics(code, 'tracefix') == 0 end)
end)
