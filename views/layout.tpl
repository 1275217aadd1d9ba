<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · robotwtf</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header class="top">
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
</header>
<main>
{{!base}}
</main>
</body>
</html>
