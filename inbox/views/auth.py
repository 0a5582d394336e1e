"""Sign-in and sign-out with Django's auth views, in the admin's look."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm


class SignInForm(AuthenticationForm):
    """Django's sign-in form with the attributes browsers and browser tests look for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        username = self.fields["username"].widget
        password = self.fields["password"].widget
        username.attrs.update({"data-testid": "login-username", "autocomplete": "username"})
        password.attrs.update({"data-testid": "login-password", "autocomplete": "current-password"})


class SignInView(auth_views.LoginView):
    """Sign in; a signed-in user is sent on to the inbox."""

    template_name = "inbox/login.html"
    form_class = SignInForm
    redirect_authenticated_user = True


class SignOutView(auth_views.LogoutView):
    """Sign out (POST only, as Django requires) and return to the sign-in page."""
