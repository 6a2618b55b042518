-- Break a function in the buffer, save, see tracefix's failures, rerun a test through a code
-- action, fix the function, save, see the failures clear. Run after the configuration under test.
local h = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')

h.run(function(outcome)
  vim.cmd('filetype on')
  local code = h.open('shop/pricing.py')
  local tests = h.closed('tests/test_pricing.py')
  local client = h.client(code)
  local results = h.record(client, 'tracefix/testResults')
  h.wait('tracefix to be ready', function() return vim.g.tracefix_status ~= nil end)
  local function failing()
    return { tests = h.diagnostics(tests, 'tracefix'), code = h.diagnostics(code, 'tracefix') }
  end

  h.replace(code, 'price * (1 - percent / 100)', 'price * (1 + percent / 100)')
  vim.cmd('write')
  h.wait('failures in both files', function() return #failing().tests > 0 and #failing().code > 0 end)
  h.wait('a failed status', function() return vim.g.tracefix_status.state == 'failed' end)
  h.wait('the failures traced to the changed line', function() return h.blamed_on(code, 7) end)
  outcome.failing = failing()
  outcome.virtual_text = vim.diagnostic.config(nil, vim.lsp.diagnostic.get_namespace(client.id)).virtual_text
  outcome.statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str

  local hover = vim.lsp.buf_request_sync(code, 'textDocument/hover', {
    textDocument = { uri = vim.uri_from_bufnr(tests) },
    position = { line = 4, character = 4 }, -- in test_apply_discount
  }, 10000)
  outcome.hover = hover[client.id].result.contents.value

  vim.api.nvim_win_set_cursor(0, { outcome.failing.code[1].line + 1, 0 })
  for i in pairs(results) do
    results[i] = nil
  end
  outcome.actions = h.code_action('^Rerun test_apply_discount$')
  h.wait('the rerun', function() return h.finished(results) end)
  outcome.rerun = h.finished(results)

  h.replace(code, 'price * (1 + percent / 100)', 'price * (1 - percent / 100)')
  vim.cmd('write')
  h.wait('the failures to clear', function() return #failing().tests == 0 and #failing().code == 0 end)
  h.wait('an idle status', function() return vim.g.tracefix_status.state == 'idle' end)
  outcome.cleared_statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str
end)
