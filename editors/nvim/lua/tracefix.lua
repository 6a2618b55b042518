-- tracefix for Neovim 0.7+: starts one `tracefix serve` per project root, keeps its status for
-- the statusline, shows traces and adds :TracefixRunAll and :TracefixAddReview. See docs/neovim.md.
local M = {}

local defaults = {
  cmd = { 'tracefix', 'serve' },
  root_markers = { 'pyproject.toml', 'setup.cfg', '.git' },
  settings = vim.empty_dict(), -- the `tracefix` section; an empty table must still encode as {}
  trusted = true, -- false: tracefix indexes and answers but runs no tests
  start = true, -- false: vim.lsp.enable('tracefix') or lspconfig starts it
  virtual_text = true, -- tracefix's messages at the end of their lines (0.11 shows only signs by default)
}

local clients = {} -- project root → client id, on 0.7
local last_status -- params of the latest tracefix/status, from any tracefix client

local function project_root(path, markers)
  local dir = vim.fn.fnamemodify(path, ':p:h')
  while true do
    for _, marker in ipairs(markers) do
      if (vim.uv or vim.loop).fs_stat(dir .. '/' .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ':h')
    if parent == dir then
      return nil
    end
    dir = parent
  end
end

-- Why a test failed is meant to be read on the line: virtual text for tracefix's diagnostics only,
-- which Neovim 0.11 no longer shows by default.
local function show_inline(client_id)
  vim.diagnostic.config({ virtual_text = true }, vim.lsp.diagnostic.get_namespace(client_id))
end

local function attach(buf, opts)
  local root = project_root(vim.api.nvim_buf_get_name(buf), opts.root_markers)
  if not root then
    return
  end
  local config = {
    name = 'tracefix',
    cmd = opts.cmd,
    root_dir = root,
    settings = { tracefix = opts.settings },
    -- read at start-up: the only way on 0.7; 0.8+ also answers workspace/configuration from `settings`
    init_options = { settings = opts.settings, trusted = opts.trusted },
  }
  local id
  if vim.lsp.start then -- 0.8+: reuses the client with this name and root
    id = vim.lsp.start(config, { bufnr = buf })
  else
    if not clients[root] then
      config.on_exit = function()
        clients[root] = nil
      end
      clients[root] = vim.lsp.start_client(config)
    end
    id = clients[root]
    vim.lsp.buf_attach_client(buf, id)
  end
  if id and opts.virtual_text then
    show_inline(id)
  end
end

local function tracefix_clients(buf)
  local found = {}
  for _, client in pairs((vim.lsp.get_clients or vim.lsp.get_active_clients)()) do
    if client.name == 'tracefix' and (buf == nil or vim.lsp.buf_is_attached(buf, client.id)) then
      table.insert(found, client)
    end
  end
  return found
end

local function execute(client, command, arguments, on_result)
  local params = { command = command, arguments = arguments }
  local function on_response(err, result)
    if err then
      vim.notify('tracefix: ' .. err.message, vim.log.levels.ERROR)
    elseif on_result then
      on_result(result)
    end
  end
  if vim.fn.has('nvim-0.11') == 1 then -- a method from 0.11, a plain function before
    client:request('workspace/executeCommand', params, on_response)
  else
    client.request('workspace/executeCommand', params, on_response)
  end
end

-- tracefix.showTrace answers with the trace as text, which Neovim would drop: show it in a split.
local function show_trace(trace)
  local name = 'tracefix://trace/' .. trace.nodeid
  local shown = vim.fn.bufnr(name)
  if shown ~= -1 then
    vim.api.nvim_buf_delete(shown, { force = true })
  end
  vim.cmd('new')
  local buf = vim.api.nvim_get_current_buf()
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'wipe'
  vim.api.nvim_buf_set_name(buf, name)
  vim.api.nvim_buf_set_lines(buf, 0, -1, true, vim.split(trace.content, '\n'))
  vim.bo[buf].modifiable = false
end

--- The latest tracefix/status in a few words, for the statusline ('' before the server is ready).
function M.status()
  local s = last_status
  if not s then
    return ''
  elseif s.state == 'running' then
    return ('tracefix: running %d'):format(s.running)
  elseif s.state == 'failed' then
    return ('tracefix: %d failed'):format(s.failed)
  elseif s.state == 'idle' then
    return 'tracefix: ok'
  end
  return 'tracefix: ' .. (s.message ~= '' and s.message or s.state)
end

local function on_status(_, status)
  last_status = status
  vim.cmd('redrawstatus')
end

local function run_all()
  for _, client in ipairs(tracefix_clients()) do
    execute(client, 'tracefix.runAll', {})
  end
end

-- A review comment on the given lines of the current buffer, typed into vim.ui.input.
local function add_review(args)
  local buf = vim.api.nvim_get_current_buf()
  local client = tracefix_clients(buf)[1]
  if not client then
    vim.notify('tracefix is not attached to this buffer', vim.log.levels.WARN)
    return
  end
  local range = { start = { line = args.line1 - 1, character = 0 }, ['end'] = { line = args.line2, character = 0 } }
  vim.ui.input({ prompt = 'Review comment: ' }, function(text)
    if text and text ~= '' then
      execute(client, 'tracefix.addReviewComment', { vim.uri_from_bufnr(buf), range, text })
    end
  end)
end

function M.setup(opts)
  opts = vim.tbl_extend('force', defaults, opts or {})
  vim.lsp.handlers['tracefix/status'] = on_status
  vim.lsp.commands['tracefix.showTrace'] = function(command, ctx) -- the code action of that name
    execute(vim.lsp.get_client_by_id(ctx.client_id), command.command, command.arguments, show_trace)
  end
  vim.api.nvim_create_user_command('TracefixRunAll', run_all, { desc = 'Run every test with tracefix' })
  vim.api.nvim_create_user_command('TracefixAddReview', add_review,
    { range = true, desc = 'Add a tracefix review comment on these lines' })
  if not opts.start and opts.virtual_text and vim.fn.has('nvim-0.8') == 1 then
    vim.api.nvim_create_autocmd('LspAttach', {
      group = vim.api.nvim_create_augroup('tracefix-inline', {}),
      callback = function(args)
        local client = vim.lsp.get_client_by_id(args.data.client_id)
        if client and client.name == 'tracefix' then
          show_inline(client.id)
        end
      end,
    })
  end
  if opts.start then
    vim.api.nvim_create_autocmd('FileType', {
      group = vim.api.nvim_create_augroup('tracefix', {}),
      pattern = 'python',
      callback = function(args)
        attach(args.buf, opts)
      end,
    })
  end
end

return M
