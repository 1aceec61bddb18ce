"""/api/v1/ssh_key_pairs through HTTP, on SQLite and on PostgreSQL: import, generate, list,
show, delete, every refusal, and tenancy between accounts."""

from __future__ import annotations

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.ids import new_id
from app.models import Image, Instance
from app.models.instance import InstanceState
from tests.conftest import Keys, bearer

URL = "/api/v1/ssh_key_pairs"


def public_line(comment: str = "alice@laptop") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


def import_key(client: TestClient, key: str, name: str = "laptop", line: str | None = None):  # type: ignore[no-untyped-def]
    body = {"name": name, "public_key": line or public_line()}
    return client.post(URL, json=body, headers=bearer(key))


def add_instance(engine: sa.Engine, account_id: str, keypair_id: str, state: str) -> str:
    """An instance row using the key pair, with the image row it needs; no host involved."""
    with Session(engine) as session:
        image = Image(
            id=new_id("image"),
            account_id=account_id,
            arch="x86_64",
            source="upload",
            format="qcow2",
            virtual_size=1,
            file_size=1,
            sha256="0" * 64,
            file_name="none.qcow2",
        )
        instance = Instance(
            id=new_id("instance"),
            account_id=account_id,
            hostname="web",
            image_id=image.id,
            cpu_cores=1,
            memory_size=128,
            state=state,
            ssh_key_id=keypair_id,
        )
        session.add(image)
        session.flush()
        session.add(instance)
        session.commit()
        return instance.id


class TestImport:
    def test_import_then_list_show_delete(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        line = public_line()
        response = import_key(client, key, "laptop", f"  {line}  \n")
        assert response.status_code == 201, response.text
        keypair = response.json()
        assert keypair["id"].startswith("ssh-")
        assert keypair["account_id"] == keys.ids["alice"]
        assert (keypair["name"], keypair["key_type"]) == ("laptop", "ssh-ed25519")
        assert keypair["public_key"] == line
        assert keypair["fingerprint"].startswith("SHA256:")

        listed = client.get(URL, headers=bearer(key)).json()
        assert set(listed) == {"items", "total", "limit", "offset"}
        assert [k["id"] for k in listed["items"]] == [keypair["id"]]
        assert client.get(f"{URL}/{keypair['id']}", headers=bearer(key)).json() == keypair

        assert client.delete(f"{URL}/{keypair['id']}", headers=bearer(key)).status_code == 204
        assert client.get(f"{URL}/{keypair['id']}", headers=bearer(key)).status_code == 404
        assert client.get(URL, headers=bearer(key)).json()["total"] == 0

    def test_key_without_comment_is_stored_with_its_name(
        self, client: TestClient, keys: Keys
    ) -> None:
        line = public_line(comment="")
        keypair = import_key(client, keys.new("alice"), "deploy", line).json()
        assert keypair["public_key"] == f"{line.strip()} deploy"

    def test_duplicate_name_is_409_but_other_accounts_may_reuse_it(
        self, client: TestClient, keys: Keys
    ) -> None:
        alice = keys.new("alice")
        assert import_key(client, alice, "laptop").status_code == 201
        again = import_key(client, alice, "laptop")
        assert again.status_code == 409
        assert again.json()["type"] == "conflict"
        assert "laptop" in again.json()["detail"]
        assert import_key(client, keys.new("bob"), "laptop").status_code == 201

    def test_bad_keys_are_400_with_the_reason(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        cases = {
            small.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode(): "at least 2048 bits, this one has 1024",
            "ssh-dss AAAAB3NzaC1kc3MAAACBALtzOdM22WHV": "ssh-dss keys are not accepted",
            "this is not a key": "not an OpenSSH public key line",
            small.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ).decode(): "this is a private key; paste the .pub file",
            f"{public_line()}\n{public_line()}": "one public key per key pair",
        }
        for line, fragment in cases.items():
            response = import_key(client, key, "k", line)
            assert response.status_code == 400, line
            assert response.json()["type"] == "bad_request"
            assert fragment in response.json()["detail"]
        assert client.get(URL, headers=bearer(key)).json()["total"] == 0

    def test_bad_names_are_422(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        for name in ["", "-leading-dash", "new\nline", "x" * 256]:
            assert import_key(client, key, name).status_code == 422, name

    def test_anonymous_is_401(self, client: TestClient) -> None:
        response = client.post(URL, json={"name": "laptop", "public_key": public_line()})
        assert response.status_code == 401


class TestGenerate:
    def test_private_key_loads_and_matches_the_stored_public_key(
        self, client: TestClient, keys: Keys
    ) -> None:
        key = keys.new("alice")
        for key_type in ["ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"]:
            response = client.post(
                f"{URL}/generate",
                json={"name": key_type, "key_type": key_type},
                headers=bearer(key),
            )
            assert response.status_code == 201, response.text
            assert response.headers["cache-control"] == "no-store"
            body = response.json()
            private = serialization.load_ssh_private_key(body["private_key"].encode(), None)
            public = private.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            assert body["public_key"] == f"{public.decode()} {key_type}"
            assert body["key_type"] == key_type
            if key_type == "ssh-rsa":
                assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 3072
            # vdc keeps no private key: showing it again gives the public half only.
            shown = client.get(f"{URL}/{body['id']}", headers=bearer(key)).json()
            assert "private_key" not in shown
            assert shown["fingerprint"] == body["fingerprint"]

    def test_default_type_is_ed25519(self, client: TestClient, keys: Keys) -> None:
        response = client.post(f"{URL}/generate", json={"name": "k"}, headers=bearer(keys.new("a")))
        assert response.json()["key_type"] == "ssh-ed25519"

    def test_unknown_type_is_400_and_duplicate_name_is_409(
        self, client: TestClient, keys: Keys
    ) -> None:
        key = keys.new("alice")
        bad = client.post(
            f"{URL}/generate", json={"name": "k", "key_type": "ssh-dss"}, headers=bearer(key)
        )
        assert bad.status_code == 400 and "cannot generate" in bad.json()["detail"]
        assert import_key(client, key, "k").status_code == 201
        taken = client.post(f"{URL}/generate", json={"name": "k"}, headers=bearer(key))
        assert taken.status_code == 409

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post(f"{URL}/generate", json={"name": "k"}).status_code == 401


class TestListing:
    def test_paging_sorting_and_name_filter(self, client: TestClient, keys: Keys) -> None:
        key = keys.new("alice")
        ids = [import_key(client, key, name).json()["id"] for name in ["b", "c", "a"]]
        page = client.get(URL, params={"limit": 2}, headers=bearer(key)).json()
        assert (page["total"], len(page["items"])) == (3, 2)
        by_name = client.get(URL, params={"sort": "-name"}, headers=bearer(key)).json()
        assert [k["name"] for k in by_name["items"]] == ["c", "b", "a"]
        named = client.get(URL, params={"name": "c"}, headers=bearer(key)).json()
        assert [k["id"] for k in named["items"]] == [ids[1]]
        bad_sort = client.get(URL, params={"sort": "public_key"}, headers=bearer(key))
        assert bad_sort.status_code == 400

    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get(URL).status_code == 401
        assert client.get(f"{URL}/ssh-xxxxxxxx").status_code == 401
        assert client.delete(f"{URL}/ssh-xxxxxxxx").status_code == 401


class TestTenancy:
    def test_another_accounts_key_pair_is_404_and_not_listed(
        self, client: TestClient, keys: Keys
    ) -> None:
        alice, bob = keys.new("alice"), keys.new("bob")
        keypair = import_key(client, alice).json()
        url = f"{URL}/{keypair['id']}"
        assert client.get(url, headers=bearer(bob)).status_code == 404
        assert client.delete(url, headers=bearer(bob)).status_code == 404
        assert client.get(URL, headers=bearer(bob)).json()["items"] == []
        mine = client.get(URL, params={"account_id": keys.ids["alice"]}, headers=bearer(bob))
        assert mine.json()["items"] == []
        assert client.get(url, headers=bearer(alice)).status_code == 200  # still there

    def test_missing_key_pair_is_404(self, client: TestClient, keys: Keys) -> None:
        response = client.get(f"{URL}/ssh-nothere0", headers=bearer(keys.new("alice")))
        assert response.status_code == 404
        assert response.json() == {"type": "not_found", "detail": "key pair ssh-nothere0 not found"}

    def test_admin_sees_all_filters_by_account_and_deletes(
        self, client: TestClient, keys: Keys
    ) -> None:
        alice, bob = keys.new("alice"), keys.new("bob")
        ids = {import_key(client, alice).json()["id"], import_key(client, bob).json()["id"]}
        everything = client.get(URL, headers=bearer(keys.admin)).json()
        assert {k["id"] for k in everything["items"]} == ids
        only_bob = client.get(
            URL, params={"account_id": keys.ids["bob"]}, headers=bearer(keys.admin)
        ).json()
        assert [k["account_id"] for k in only_bob["items"]] == [keys.ids["bob"]]
        bobs = only_bob["items"][0]["id"]
        assert client.get(f"{URL}/{bobs}", headers=bearer(keys.admin)).status_code == 200
        assert client.delete(f"{URL}/{bobs}", headers=bearer(keys.admin)).status_code == 204


class TestDeleteInUse:
    def test_refused_while_a_live_instance_uses_it(
        self, client: TestClient, keys: Keys, engine: sa.Engine
    ) -> None:
        key = keys.new("alice")
        keypair = import_key(client, key).json()
        instance_id = add_instance(engine, keys.ids["alice"], keypair["id"], InstanceState.running)
        response = client.delete(f"{URL}/{keypair['id']}", headers=bearer(key))
        assert response.status_code == 409
        assert instance_id in response.json()["detail"]
        assert client.get(f"{URL}/{keypair['id']}", headers=bearer(key)).status_code == 200

        with Session(engine) as session:
            instance = session.get(Instance, instance_id)
            assert instance is not None
            instance.state = InstanceState.terminated
            session.add(instance)
            session.commit()
        assert client.delete(f"{URL}/{keypair['id']}", headers=bearer(key)).status_code == 204
        with Session(engine) as session:
            terminated = session.get(Instance, instance_id)
            assert terminated is not None and terminated.ssh_key_id is None
