"""Auth endpoints: the browser's session lives here, never at the service.

All async, on Django's async auth API (aauthenticate, alogin, alogout,
request.auser()). Unsafe methods are CSRF-checked by CsrfViewMiddleware,
login included (login CSRF).
"""

from __future__ import annotations

from django.contrib.auth import aauthenticate, alogin, alogout
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import ensure_csrf_cookie

from gateway.auth.decorators import api_view
from gateway.problems import ProblemError
from gateway.proxy.bodies import read_json_object


@api_view(methods=["GET"])
@ensure_csrf_cookie
async def csrf(request: HttpRequest) -> HttpResponseBase:
    """Set the csrftoken cookie and return the token for X-CSRFToken."""
    return JsonResponse({"csrfToken": get_token(request)})


@api_view(methods=["POST"])
async def login(request: HttpRequest) -> HttpResponseBase:
    _, data = read_json_object(request)
    username, password = data.get("username"), data.get("password")
    if not (isinstance(username, str) and isinstance(password, str) and username and password):
        raise ProblemError(400, "Send a JSON object with string fields username and password.")
    user = await aauthenticate(request, username=username, password=password)
    if user is None:
        raise ProblemError(401, "Invalid username or password.")
    previous_key = request.session.session_key
    await alogin(request, user)  # cycles the session key and rotates the CSRF token
    if previous_key is not None and request.session.session_key == previous_key:
        # alogin keeps the key when the same user logs in again; a login
        # always yields a fresh session id (GW-SESS-5).
        await request.session.acycle_key()
    return JsonResponse(
        {"id": user.pk, "username": user.get_username(), "csrfToken": get_token(request)}
    )


@api_view(methods=["POST"])
async def logout(request: HttpRequest) -> HttpResponseBase:
    await alogout(request)
    return HttpResponse(status=204)


@api_view(methods=["GET"], login=True)
async def me(request: HttpRequest) -> HttpResponseBase:
    user = await request.auser()  # type: ignore[attr-defined]
    return JsonResponse({"id": user.pk, "username": user.get_username()})
