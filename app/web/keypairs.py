"""Key pairs: list, import a public key, generate (the private key downloads once)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.errors import AppError
from app.models.keypair import KeyPairGenerate, KeyPairImport
from app.services.identity import keypairs
from app.services.listing import MAX_LIMIT, PageRequest
from app.web.pages import DB, PageRoute, User, field_errors, form_of, redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _page(request: Request, session: DB, user: User, **extra: object) -> Response:
    rows, _ = keypairs.list_keypairs(session, user.account, PageRequest(limit=MAX_LIMIT))
    context = {"keypairs": rows, "values": {}, "errors": {}, "notice": "", **extra}
    return render(request, "keypairs.html", context, status=400 if extra.get("errors") else 200)


@router.get("/keypairs")
def list_page(request: Request, session: DB, user: User, notice: str = "") -> Response:
    return _page(request, session, user, notice=notice)


@router.post("/keypairs/import")
async def import_key(request: Request, session: DB, user: User) -> Response:
    form = await form_of(request, user)
    try:
        body = KeyPairImport(name=form.get("name", ""), public_key=form.get("public_key", ""))
        keypair = keypairs.import_key(
            session, request.app.state.settings, user.account, body.name, body.public_key
        )
    except (ValidationError, AppError) as error:
        session.rollback()
        found = field_errors(error, ("name", "public_key"))
        if "" in found:  # what is wrong with an import is the key, unless the name is named
            found["public_key"] = found.pop("")
        errors = {f"import_{k}": v for k, v in found.items()}
        return _page(request, session, user, values=form, errors=errors)
    return redirect("/keypairs", f"imported {keypair.id}")


@router.post("/keypairs/generate")
async def generate(request: Request, session: DB, user: User) -> Response:
    """Answers with the private key as a file to save: vdc keeps no copy, so this is the
    only time it exists outside the browser."""
    form = await form_of(request, user)
    try:
        body = KeyPairGenerate(name=form.get("name", ""), key_type=form.get("key_type", ""))
        keypair, private_key = keypairs.generate_key(
            session, request.app.state.settings, user.account, body.name, body.key_type
        )
    except (ValidationError, AppError) as error:
        session.rollback()
        errors = {f"generate_{k}": v for k, v in field_errors(error, ("name", "key_type")).items()}
        return _page(request, session, user, values=form, errors=errors)
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in keypair.name) + ".pem"
    return Response(
        private_key,
        media_type="application/x-pem-file",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/keypairs/{keypair_id}/delete")
async def delete(request: Request, keypair_id: str, session: DB, user: User) -> Response:
    await form_of(request, user)
    keypairs.delete_keypair(session, user.account, keypair_id)
    return redirect("/keypairs", f"deleted {keypair_id}")
