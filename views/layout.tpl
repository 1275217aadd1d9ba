<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{{title}}{{' · ' + wiki.title if defined('wiki') else ''}} · robotwtf</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<script src="/static/wiki.js" defer></script>
</head>
<body>
<header class="top">
<div class="top-inner">
  <a class="brand" href="/"><img src="/static/favicon.svg" alt="" width="22" height="22">robotwtf</a>
  <nav>
  % if user:
    % if user['is_admin']:
    <a href="/admin">Admin</a>
    % end
    <a class="who" href="/account">{{user['handle'] or user['username']}}</a>
    <form method="post" action="/auth/logout" class="inline">
      <input type="hidden" name="csrf_token" value="{{csrf_token()}}">
      <button type="submit" class="link">Sign out</button>
    </form>
  % else:
    <a href="/auth/login">Sign in</a>
  % end
  </nav>
</div>
</header>
% if defined('wiki'):
% include('wiki_header')
% end
% if defined('sidebar'):
<main class="with-sidebar">
{{!sidebar}}
<div class="main-column">
{{!base}}
</div>
</main>
% else:
<main>
{{!base}}
</main>
% end
</body>
</html>
