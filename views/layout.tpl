<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}{{' · ' + wiki.title if defined('wiki') else ''}} · robotwtf</title>
<link rel="stylesheet" href="/static/style.css">
<script src="/static/wiki.js" defer></script>
</head>
<body>
<header class="top">
<div class="top-inner">
  <a class="brand" href="/">robotwtf</a>
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
<main>
{{!base}}
</main>
</body>
</html>
